//! A restic repository in an S3-compatible bucket, path-style, signed
//! with SigV4: the layout restic's own S3 backend uses (`config`,
//! `keys/ID`, `data/XX/ID`, ... under the prefix). Requests go through
//! the daemon's reqwest client on its tokio runtime; rustic calls this
//! from blocking threads, which wait on the answer. Transient failures
//! (connection errors, 5xx, 429) are retried with back-off.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use rustic_core::{BytesList, FileType, Id, ReadBackend, RusticResult, WriteBackend};

use super::sigv4::{self, Keys};
use super::{backend_error, object_path, BackendError, Blocking};

/// Requests tried at most this many times when they fail transiently.
const DEFAULT_TRIES: u32 = 5;
/// A request (with its body) must finish within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answers read: a whole file (restic's packs are far smaller),
/// a listing page or other metadata, an error.
const FILE_BODY_CAP: usize = 1 << 30;
const META_BODY_CAP: usize = 16 << 20;
const ERROR_BODY_CAP: usize = 64 << 10;
/// Most objects one listing may return (restic repositories of many TiB
/// hold far fewer).
const MAX_LISTED: usize = 50_000_000;

/// The Host header reqwest sends for `endpoint`, which is what is signed:
/// the host in lower case, the port only when it is not the scheme's.
fn signed_host(endpoint: &str) -> Result<String, BackendError> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| BackendError::Config(format!("endpoint {endpoint}: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| BackendError::Config(format!("endpoint {endpoint}: no host")))?;
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// Where the bucket is and how to reach it.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `http://host:port` or `https://host`.
    pub endpoint: String,
    pub bucket: String,
    /// The prefix inside the bucket, without slashes at either end ("" for none).
    pub prefix: String,
    pub region: String,
    pub keys: Keys,
    pub tries: u32,
}

impl S3Config {
    pub fn default_tries() -> u32 {
        DEFAULT_TRIES
    }
}

/// The backend.
#[derive(Debug)]
pub struct S3Backend {
    config: S3Config,
    host: String,
    http: reqwest::Client,
    blocking: Blocking,
    /// Its operation's progress: a cancelled one stops reading answers.
    stop: Arc<crate::backup::Progress>,
}

/// One request: what is sent, and how much of the answer is read.
#[derive(Clone)]
struct Call<'a> {
    method: Method,
    /// The object (`None`: the bucket itself).
    key: Option<&'a str>,
    query: &'a [(&'a str, &'a str)],
    /// Headers sent and signed besides SigV4's own.
    extra: &'a [(&'a str, &'a str)],
    body: Bytes,
    body_cap: usize,
}

impl<'a> Call<'a> {
    /// `method` on `key`, empty, answered with metadata at most.
    fn new(method: Method, key: Option<&'a str>) -> Self {
        Call {
            method,
            key,
            query: &[],
            extra: &[],
            body: Bytes::new(),
            body_cap: META_BODY_CAP,
        }
    }
}

/// One answer: status and body.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

impl S3Backend {
    pub fn new(
        config: S3Config,
        blocking: Blocking,
        stop: Arc<crate::backup::Progress>,
    ) -> Result<Self, BackendError> {
        crate::image::registry::transport::install_crypto();
        let host = signed_host(&config.endpoint)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // A redirect would carry the session token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BackendError::Config(format!("S3 client: {e}")))?;
        Ok(S3Backend {
            config,
            host,
            http,
            blocking,
            stop,
        })
    }

    /// The object key of a repository path.
    fn key(&self, path: &str) -> String {
        match self.config.prefix.as_str() {
            "" => path.to_string(),
            prefix => format!("{prefix}/{path}"),
        }
    }

    /// Sends one request, retrying what failed transiently.
    fn send(&self, call: Call<'_>) -> Result<Answer, BackendError> {
        let mut delay = Duration::from_millis(200);
        let mut tries = 1;
        loop {
            let result = self.send_once(&call);
            let transient = match &result {
                Ok(a) => a.status.is_server_error() || a.status == StatusCode::TOO_MANY_REQUESTS,
                Err(e) => e.is_transient(),
            };
            if !transient || tries >= self.config.tries {
                return result;
            }
            tracing::debug!(tries, key = ?call.key, "S3 request failed; trying again");
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(10));
            tries += 1;
        }
    }

    fn send_once(&self, call: &Call<'_>) -> Result<Answer, BackendError> {
        let Call {
            method,
            key,
            query,
            extra,
            body,
            body_cap,
        } = call.clone();
        let path = match key {
            Some(k) => format!("/{}/{k}", self.config.bucket),
            None => format!("/{}", self.config.bucket),
        };
        let payload = sigv4::sha256_hex(&body);
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let request = sigv4::Request {
            method: method.as_str(),
            host: &self.host,
            path: &path,
            query,
            headers: extra,
            payload_sha256: &payload,
        };
        let signed = sigv4::sign(&request, &self.config.keys, &self.config.region, &amz_date);
        let mut url = format!("{}{}", self.config.endpoint, sigv4::uri_encode(&path, true));
        if !query.is_empty() {
            url = format!("{url}?{}", sigv4::canonical_query(query));
        }
        let mut builder = self.http.request(method, url).body(body);
        for (name, value) in extra
            .iter()
            .copied()
            .chain(signed.iter().map(|(k, v)| (*k, v.as_str())))
        {
            builder = builder.header(name, value);
        }
        let stop = self.stop.clone();
        self.blocking.wait(async move {
            let mut response = builder.send().await.map_err(BackendError::Http)?;
            let status = response.status();
            let headers = response.headers().clone();
            // Never more than asked for: a hostile endpoint's endless body
            // must not fill the daemon's memory.
            let cap = if status.is_success() {
                body_cap
            } else {
                ERROR_BODY_CAP
            };
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(BackendError::Http)? {
                if stop.is_cancelled() {
                    return Err(BackendError::Cancelled(super::CANCELLED));
                }
                if body.len() + chunk.len() > cap {
                    if !status.is_success() {
                        // An error's start says enough; its status stays.
                        break;
                    }
                    return Err(BackendError::Protocol(format!(
                        "an answer longer than the {cap} bytes expected"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Answer {
                status,
                headers,
                body: body.into(),
            })
        })
    }

    /// Fails unless the answer is a success.
    fn expect_ok(&self, what: &str, key: &str, answer: Answer) -> Result<Answer, BackendError> {
        if answer.status.is_success() {
            return Ok(answer);
        }
        Err(BackendError::Status {
            what: format!("{what} {key}"),
            status: answer.status.as_u16(),
            body: String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]).into(),
        })
    }

    /// Every object under `dir/`, with its size.
    fn list_dir(&self, dir: &str) -> Result<Vec<(String, u64)>, BackendError> {
        let prefix = self.key(&format!("{dir}/"));
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", prefix.as_str())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.as_str()));
            }
            let answer = self.send(Call {
                query: &query,
                ..Call::new(Method::GET, None)
            })?;
            let answer = self.expect_ok("listing", &prefix, answer)?;
            let page = super::s3_list::parse_list(&String::from_utf8_lossy(&answer.body))
                .map_err(BackendError::Protocol)?;
            objects.extend(page.objects);
            if objects.len() > MAX_LISTED {
                return Err(BackendError::Protocol(format!(
                    "more than {MAX_LISTED} objects under {prefix}"
                )));
            }
            match page.next {
                Some(next) if !seen.insert(next.clone()) => {
                    return Err(BackendError::Protocol(
                        "the listing repeats its continuation token".into(),
                    ))
                }
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
    }

    fn get(
        &self,
        tpe: FileType,
        id: &Id,
        range: Option<(u32, u32)>,
    ) -> Result<Bytes, BackendError> {
        let key = self.key(&object_path(tpe, id));
        let cap = match range {
            Some((_, length)) => length.max(1) as usize,
            None => FILE_BODY_CAP,
        };
        let range = range.map(|(offset, length)| {
            let last = u64::from(offset) + u64::from(length).max(1) - 1;
            format!("bytes={offset}-{last}")
        });
        let extra: Vec<(&str, &str)> = range.iter().map(|r| ("range", r.as_str())).collect();
        let answer = self.send(Call {
            extra: &extra,
            body_cap: cap,
            ..Call::new(Method::GET, Some(&key))
        })?;
        Ok(self.expect_ok("reading", &key, answer)?.body)
    }
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        format!(
            "s3:{}/{}/{}",
            self.config.endpoint, self.config.bucket, self.config.prefix
        )
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        let wrap = |e| backend_error("listing the repository", e);
        if tpe == FileType::Config {
            let key = self.key("config");
            let answer = self
                .send(Call::new(Method::HEAD, Some(&key)))
                .map_err(wrap)?;
            if answer.status == StatusCode::NOT_FOUND {
                return Ok(Vec::new());
            }
            let answer = self.expect_ok("looking for", &key, answer).map_err(wrap)?;
            let size = answer
                .headers
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            return Ok(vec![(Id::default(), size)]);
        }
        let objects = self.list_dir(tpe.dirname()).map_err(wrap)?;
        Ok(objects
            .into_iter()
            .filter_map(|(key, size)| {
                let name = key.rsplit('/').next()?;
                Some((Id::parse_some(name, tpe)?, u32::try_from(size).ok()?))
            })
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.get(tpe, id, None)
            .map_err(|e| backend_error("reading from the repository", e))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let body = self
            .get(tpe, id, Some((offset, length)))
            .map_err(|e| backend_error("reading from the repository", e))?;
        if body.len() != length as usize {
            let short = BackendError::Protocol(format!(
                "asked {length} bytes at {offset} of {}, got {}",
                object_path(tpe, id),
                body.len()
            ));
            return Err(backend_error("reading from the repository", short));
        }
        Ok(body)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.key(&object_path(tpe, id))
    }
}

impl WriteBackend for S3Backend {
    /// S3 has no folders to make; the bucket must exist (as restic's own
    /// backend, berth does not make buckets: they carry policies).
    fn create(&self) -> RusticResult<()> {
        let answer = self
            .send(Call::new(Method::HEAD, None))
            .map_err(|e| backend_error("reaching the bucket", e))?;
        self.expect_ok("reaching bucket", &self.config.bucket, answer)
            .map(|_| ())
            .map_err(|e| backend_error("reaching the bucket", e))
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let key = self.key(&object_path(tpe, id));
        let body: Bytes = match content.into_vec().as_slice() {
            [one] => one.clone(),
            parts => parts.concat().into(),
        };
        let wrap = |e| backend_error("writing to the repository", e);
        let answer = self
            .send(Call {
                body,
                ..Call::new(Method::PUT, Some(&key))
            })
            .map_err(wrap)?;
        self.expect_ok("writing", &key, answer).map_err(wrap)?;
        Ok(())
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let key = self.key(&object_path(tpe, id));
        let wrap = |e| backend_error("removing from the repository", e);
        let answer = self
            .send(Call::new(Method::DELETE, Some(&key)))
            .map_err(wrap)?;
        self.expect_ok("removing", &key, answer).map_err(wrap)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_host_is_the_one_sent() {
        assert_eq!(
            signed_host("https://S3.Example.com:443").unwrap(),
            "s3.example.com"
        );
        assert_eq!(signed_host("http://h:80").unwrap(), "h");
        assert_eq!(
            signed_host("http://127.0.0.1:9000").unwrap(),
            "127.0.0.1:9000"
        );
        assert_eq!(signed_host("http://[::1]:9000").unwrap(), "[::1]:9000");
        assert!(signed_host("nothing").is_err());
    }
}
