//! `berth images|import|load|inspect`.

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Args;
use hyper::Method;
use serde_json::Value;

use super::format::{human_size, pretty_json, table};
use crate::client::{encode, ApiClient};

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A root filesystem tar (`-` for stdin).
    file: String,
    /// Repository and tag for the new image.
    reference: Option<String>,
    /// Apply Dockerfile instructions to the image.
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Commit message.
    #[arg(short, long)]
    message: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from a tar archive file instead of stdin.
    #[arg(short, long)]
    input: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    names: Vec<String>,
}

fn read_input(path: &str) -> Result<Bytes> {
    let bytes = if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(path).with_context(|| format!("reading {path}"))?
    };
    Ok(Bytes::from(bytes))
}

/// Prints a JSON message stream (`status` / `stream` lines).
fn print_messages(body: &[u8]) -> Result<i32> {
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let msg: Value = serde_json::from_slice(line)?;
        if let Some(err) = msg["error"].as_str() {
            eprintln!("{err}");
            return Ok(1);
        }
        if let Some(s) = msg["status"].as_str() {
            println!("{s}");
        }
        if let Some(s) = msg["stream"].as_str() {
            print!("{s}");
        }
    }
    Ok(0)
}

/// `berth images`.
pub async fn images(api: &ApiClient, a: ImagesArgs) -> Result<i32> {
    let list: Vec<Value> = api.call(Method::GET, "/images/json", None).await?.json()?;
    if a.quiet {
        list.iter().for_each(|i| println!("{}", short_id(i)));
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list.iter().flat_map(image_rows).collect();
    print!(
        "{}",
        table(&["REPOSITORY", "TAG", "IMAGE ID", "SIZE"], &rows)
    );
    Ok(0)
}

/// An image's ID as `docker images` shows it: 12 hex digits, no `sha256:`.
fn short_id(img: &Value) -> String {
    img["Id"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("sha256:")[..12]
        .to_string()
}

/// An image's `images` rows: one per tag, or one `<none>` row when it has
/// no tag.
fn image_rows(img: &Value) -> Vec<Vec<String>> {
    let size = human_size(img["Size"].as_f64().unwrap_or(0.0));
    let tags = repo_tags(img);
    if tags.is_empty() {
        return vec![vec!["<none>".into(), "<none>".into(), short_id(img), size]];
    }
    tags.iter()
        .map(|tag| {
            let (repo, t) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
            vec![repo.to_string(), t.to_string(), short_id(img), size.clone()]
        })
        .collect()
}

/// An image's `RepoTags` (none when absent or null).
fn repo_tags(img: &Value) -> Vec<String> {
    img["RepoTags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(String::from))
        .collect()
}

/// `berth import`.
pub async fn import(api: &ApiClient, a: ImportArgs) -> Result<i32> {
    let mut path = String::from("/images/create?fromSrc=-");
    if let Some(r) = &a.reference {
        path.push_str(&format!("&repo={}", encode(r)));
    }
    for c in &a.change {
        path.push_str(&format!("&changes={}", encode(c)));
    }
    if let Some(m) = &a.message {
        path.push_str(&format!("&message={}", encode(m)));
    }
    let body = read_input(&a.file)?;
    let resp = api
        .open(Method::POST, &path, Some((body, "application/x-tar")))
        .await?;
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await?
        .to_bytes();
    print_messages(&bytes)
}

/// `berth load`.
pub async fn load(api: &ApiClient, a: LoadArgs) -> Result<i32> {
    let body = read_input(a.input.as_deref().unwrap_or("-"))?;
    let resp = api
        .open(
            Method::POST,
            "/images/load",
            Some((body, "application/x-tar")),
        )
        .await?;
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await?
        .to_bytes();
    print_messages(&bytes)
}

/// `berth inspect`: containers first, then images (as `docker inspect`).
pub async fn inspect(api: &ApiClient, a: InspectArgs) -> Result<i32> {
    let mut found = Vec::new();
    let mut failed = false;
    for name in &a.names {
        let n = encode(name);
        let result = match api
            .call(Method::GET, &format!("/containers/{n}/json"), None)
            .await
        {
            Ok(r) => Ok(r),
            Err(_) => {
                api.call(Method::GET, &format!("/images/{n}/json"), None)
                    .await
            }
        };
        match result {
            Ok(r) => found.push(r.json::<Value>()?),
            Err(_) => {
                eprintln!("Error: No such object: {name}");
                failed = true;
            }
        }
    }
    println!("{}", pretty_json(&Value::Array(found)));
    Ok(i32::from(failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn images_rows_are_one_per_tag_or_one_none_row() {
        let id = format!("sha256:{}", "ab".repeat(32));
        let tagged = json!({"Id": id, "Size": 0, "RepoTags": ["a/b:1", "c"]});
        let untagged = json!({"Id": id, "Size": 0, "RepoTags": null});
        let rows: Vec<String> = image_rows(&tagged)
            .into_iter()
            .chain(image_rows(&untagged))
            .map(|r| r[..3].join(" "))
            .collect();
        assert_eq!(
            rows,
            [
                "a/b 1 abababababab",
                "c latest abababababab",
                "<none> <none> abababababab"
            ]
        );
    }
}
