//! A load client for the volume API benchmark (`bench/volume_bench.py`):
//! plain HTTP/1.1 over a unix socket, one keep-alive connection per
//! client, std only, so the client's own cost per request is a few
//! microseconds and the engine's time is what is measured. Engine-neutral:
//! it speaks the Docker API, to berth and to dockerd alike.
//!
//! ```text
//! api_load SOCKET OP PREFIX COUNT [CLIENTS]
//!   OP: create | inspect | remove | list (COUNT lists, one client)
//!       | ping (COUNT `GET /_ping`: the round-trip floor of either engine)
//! ```
//!
//! Names are `PREFIX` followed by the index, six digits. Prints one JSON
//! line: op, count, clients, wall seconds, median and p99 per request (ms).
//! Any answer other than the expected status stops it with an error.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

const API: &str = "/v1.41";

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Create,
    Inspect,
    Remove,
    List,
    Ping,
}

fn parse_op(s: &str) -> Result<Op, String> {
    match s {
        "create" => Ok(Op::Create),
        "inspect" => Ok(Op::Inspect),
        "remove" => Ok(Op::Remove),
        "list" => Ok(Op::List),
        "ping" => Ok(Op::Ping),
        other => Err(format!("unknown op {other:?}")),
    }
}

/// The request for `op` on `name`, and the status it must get.
fn request(op: Op, name: &str) -> (String, u16) {
    match op {
        Op::Create => {
            let body = format!("{{\"Name\":\"{name}\"}}");
            let head = format!(
                "POST {API}/volumes/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            (head + &body, 201)
        }
        Op::Inspect => (
            format!("GET {API}/volumes/{name} HTTP/1.1\r\nHost: d\r\n\r\n"),
            200,
        ),
        Op::Remove => (
            format!("DELETE {API}/volumes/{name} HTTP/1.1\r\nHost: d\r\n\r\n"),
            204,
        ),
        Op::List => (
            format!("GET {API}/volumes HTTP/1.1\r\nHost: d\r\n\r\n"),
            200,
        ),
        Op::Ping => (format!("GET {API}/_ping HTTP/1.1\r\nHost: d\r\n\r\n"), 200),
    }
}

/// Reads one response; returns its status (the body is read and dropped).
fn read_response(conn: &mut BufReader<UnixStream>) -> Result<u16, String> {
    let mut line = String::new();
    conn.read_line(&mut line).map_err(|e| e.to_string())?;
    let status: u16 = (line.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let (mut length, mut chunked) = (0usize, false);
    loop {
        line.clear();
        conn.read_line(&mut line).map_err(|e| e.to_string())?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().map_err(|_| format!("bad {header:?}"))?;
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        read_chunks(conn)?;
    } else {
        skip(conn, length)?;
    }
    Ok(status)
}

fn read_chunks(conn: &mut BufReader<UnixStream>) -> Result<(), String> {
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line).map_err(|e| e.to_string())?;
        let size =
            usize::from_str_radix(line.trim(), 16).map_err(|_| format!("bad chunk {line:?}"))?;
        skip(conn, size + 2)?;
        if size == 0 {
            return Ok(());
        }
    }
}

fn skip(conn: &mut BufReader<UnixStream>, n: usize) -> Result<(), String> {
    let copied = std::io::copy(&mut conn.by_ref().take(n as u64), &mut std::io::sink())
        .map_err(|e| e.to_string())?;
    match copied as usize == n {
        true => Ok(()),
        false => Err("connection closed mid-body".into()),
    }
}

/// One client: its requests in order on one connection; per-request ms.
fn client(socket: &str, op: Op, names: Vec<String>) -> Result<Vec<f64>, String> {
    let stream = UnixStream::connect(socket).map_err(|e| format!("{socket}: {e}"))?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut times = Vec::with_capacity(names.len());
    for name in names {
        let (req, want) = request(op, &name);
        let t0 = Instant::now();
        writer
            .write_all(req.as_bytes())
            .map_err(|e| e.to_string())?;
        let status = read_response(&mut reader)?;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        if status != want {
            return Err(format!("{name}: status {status}, want {want}"));
        }
    }
    Ok(times)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn run(args: &[String]) -> Result<String, String> {
    let [socket, op, prefix, count, rest @ ..] = args else {
        return Err("usage: api_load SOCKET OP PREFIX COUNT [CLIENTS]".into());
    };
    let op = parse_op(op)?;
    let count: usize = count.parse().map_err(|_| "COUNT must be a number")?;
    let clients: usize = match rest.first() {
        Some(c) => c.parse().map_err(|_| "CLIENTS must be a number")?,
        None => 1,
    };
    let clients = if op == Op::List { 1 } else { clients.max(1) };
    let mut shares: Vec<Vec<String>> = vec![Vec::new(); clients];
    for i in 0..count {
        shares[i % clients].push(format!("{prefix}{i:06}"));
    }
    let t0 = Instant::now();
    let threads: Vec<_> = (shares.into_iter())
        .map(|names| {
            let socket = socket.clone();
            std::thread::spawn(move || client(&socket, op, names))
        })
        .collect();
    let mut times = Vec::with_capacity(count);
    for t in threads {
        times.extend(t.join().map_err(|_| "a client panicked")??);
    }
    let wall = t0.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "op": args[1], "count": count, "clients": clients, "wall_s": wall,
        "median_ms": percentile(&times, 0.5), "p99_ms": percentile(&times, 0.99),
    })
    .to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("api_load: {e}");
            std::process::exit(1);
        }
    }
}
