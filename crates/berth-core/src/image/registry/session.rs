//! One conversation with one repository: the endpoint, the distribution
//! client (which runs the token flow and streams blobs), and the
//! authorization header berth adds to the requests it makes itself
//! (manifests, which it reads with a size cap the client does not have).

use futures_util::StreamExt;
use oci_client::RegistryOperation;

use super::auth::Credentials;
use super::name::RemoteReference;
use super::transport::Endpoint;
use super::{RegistryConfig, RegistryError};

/// Longest wait for a manifest or config request.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// An open conversation with a repository.
pub struct Session {
    pub endpoint: Endpoint,
    pub client: oci_client::Client,
    http: reqwest::Client,
    /// The repository (tag-less) for blob requests.
    pub repo: oci_client::Reference,
    /// `Authorization` value for berth's own requests.
    authorization: Option<String>,
}

impl Session {
    /// Resolves the endpoint and authenticates for `op` (the token flow
    /// runs here, so a refused login shows before any download).
    pub async fn open(
        config: &RegistryConfig,
        reference: &RemoteReference,
        credentials: &Credentials,
        op: RegistryOperation,
    ) -> Result<Session, RegistryError> {
        let endpoint = Endpoint::resolve(config, &reference.domain).await?;
        let client = endpoint.oci_client(&[]);
        let http = endpoint.http_client(REQUEST_TIMEOUT)?;
        let repo = oci_client::Reference::with_tag(
            reference.domain.clone(),
            reference.path.clone(),
            "latest".into(),
        );
        let token = client
            .auth(&repo, &credentials.to_oci(), op)
            .await
            .map_err(|e| RegistryError::from_oci(e, "Get", &endpoint.base_url()))?;
        if op == RegistryOperation::Push && token.is_none() {
            if let Credentials::Anonymous = credentials {
                refuse_basic_without_credentials(&http, &endpoint.base_url()).await?;
            }
        }
        let authorization = match (token, credentials) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Credentials::Basic { username, password }) => Some(basic(username, password)),
            (None, _) => None,
        };
        Ok(Session {
            endpoint,
            client,
            http,
            repo,
            authorization,
        })
    }

    /// `scheme://host/v2/`.
    pub fn base_url(&self) -> String {
        self.endpoint.base_url()
    }

    /// The URL of a blob of this repository.
    pub fn blob_url(&self, digest: &str) -> String {
        format!("{}{}/blobs/{digest}", self.base_url(), self.path())
    }

    /// The URL of a manifest (by tag or digest) of this repository.
    pub fn manifest_url(&self, reference: &str) -> String {
        format!("{}{}/manifests/{reference}", self.base_url(), self.path())
    }

    /// The repository path (`library/busybox`).
    pub fn path(&self) -> &str {
        self.repo.repository()
    }

    /// A GET with berth's authorization; non-success statuses become
    /// errors in the registry's words.
    pub async fn get(&self, url: &str, accept: &str) -> Result<reqwest::Response, RegistryError> {
        let mut request = self.http.get(url).header(reqwest::header::ACCEPT, accept);
        if let Some(value) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| RegistryError::unreachable(url, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED
            && self.authorization.is_none()
            && asks_for_basic(&response)
        {
            // dockerd's words for a registry that wants a password it
            // was not given (Go's client names the request it made).
            return Err(RegistryError::Unauthorized(format!(
                "Head \"{url}\": no basic auth credentials"
            )));
        }
        let body = small_body(response).await;
        Err(RegistryError::from_status(status.as_u16(), &body))
    }
}

/// A push without credentials to a registry that asks for a password
/// fails at once, in dockerd's words (a pull fails at its manifest, see
/// [`Session::get`]).
async fn refuse_basic_without_credentials(
    http: &reqwest::Client,
    base_url: &str,
) -> Result<(), RegistryError> {
    let response = http
        .get(base_url)
        .send()
        .await
        .map_err(|e| RegistryError::unreachable(base_url, &e))?;
    if response.status() == reqwest::StatusCode::UNAUTHORIZED && asks_for_basic(&response) {
        return Err(RegistryError::Unauthorized(
            "no basic auth credentials".into(),
        ));
    }
    Ok(())
}

/// Whether a 401 challenges for basic credentials.
fn asks_for_basic(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.trim_start().to_ascii_lowercase().starts_with("basic"))
}

fn basic(username: &str, password: &str) -> String {
    use base64::Engine;
    let pair = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The most of a small answer's body read (an error, of which berth
/// shows the first; a token): a registry may send an endless one.
const MAX_SMALL_BODY: u64 = 64 << 10;

/// A small answer's body (an error, a token) as text, at most
/// [`MAX_SMALL_BODY`] bytes of it (empty if longer or unreadable).
pub async fn small_body(response: reqwest::Response) -> String {
    read_capped(response, MAX_SMALL_BODY, "error body")
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Reads a response body, refusing one longer than `max` bytes (by its
/// header or by what arrives).
pub async fn read_capped(
    response: reqwest::Response,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_big = || RegistryError::Protocol(format!("{what} is larger than {max} bytes"));
    if response.content_length().is_some_and(|n| n > max) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RegistryError::Protocol(format!("reading {what}: {e}")))?;
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
