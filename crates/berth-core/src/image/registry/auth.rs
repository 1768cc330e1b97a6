//! Credentials as clients send them (`X-Registry-Auth`, `POST /auth`)
//! and `docker login`'s check against the registry.

use base64::Engine;
use serde::Deserialize;

use super::RegistryError;

/// Docker's `registry.AuthConfig` (the fields berth reads). Its `Debug`
/// shows no secret.
#[derive(Clone, Default, Deserialize)]
pub struct AuthConfig {
    #[serde(default, alias = "Username")]
    pub username: String,
    #[serde(default, alias = "Password")]
    pub password: String,
    /// base64 of `user:password`, as `config.json` keeps it.
    #[serde(default, alias = "Auth")]
    pub auth: String,
    #[serde(default, alias = "ServerAddress")]
    pub serveraddress: String,
    #[serde(default, alias = "IdentityToken")]
    pub identitytoken: String,
    #[serde(default, alias = "RegistryToken")]
    pub registrytoken: String,
}

/// How to authenticate to a registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// A bearer token given by the client (`registrytoken`).
    Token(String),
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("serveraddress", &self.serveraddress)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::Token(_) => f.write_str("Token(***)"),
        }
    }
}

impl AuthConfig {
    /// Parses a JSON body (`POST /auth`).
    pub fn from_json(body: &[u8]) -> Result<Self, RegistryError> {
        serde_json::from_slice(body)
            .map_err(|e| RegistryError::BadRequest(format!("invalid auth configuration: {e}")))
    }

    /// Decodes an `X-Registry-Auth` header: base64url (padded or not) of
    /// the JSON. An empty header is anonymous; an undecodable one is
    /// anonymous too, as dockerd treats it.
    pub fn from_header(header: &str) -> Self {
        let header = header.trim();
        let engines = [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD,
        ];
        engines
            .iter()
            .find_map(|engine| engine.decode(header).ok())
            .and_then(|json| serde_json::from_slice(&json).ok())
            .unwrap_or_default()
    }

    /// The credentials these fields give.
    pub fn credentials(&self) -> Credentials {
        if !self.registrytoken.is_empty() {
            return Credentials::Token(self.registrytoken.clone());
        }
        if !self.username.is_empty() {
            return Credentials::Basic {
                username: self.username.clone(),
                password: self.password.clone(),
            };
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((user, pass)) if !user.is_empty() => Credentials::Basic {
                username: user.to_string(),
                password: pass.to_string(),
            },
            _ => Credentials::Anonymous,
        }
    }
}

impl Credentials {
    /// The registry client's form.
    pub fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Token(t) => RegistryAuth::Bearer(t.clone()),
        }
    }
}

/// The registry host `docker login` names: `serveraddress` without a
/// scheme or path; Docker Hub's index address is Docker Hub.
pub fn login_host(server_address: &str) -> String {
    let trimmed = server_address
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = trimmed.split('/').next().unwrap_or_default();
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms_decode() {
        let json = r#"{"username":"u","password":"p","serveraddress":"r:5000"}"#;
        for engine in [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let auth = AuthConfig::from_header(&engine.encode(json));
            assert_eq!(
                auth.credentials(),
                Credentials::Basic {
                    username: "u".into(),
                    password: "p".into()
                }
            );
        }
        assert_eq!(
            AuthConfig::from_header("").credentials(),
            Credentials::Anonymous
        );
        assert_eq!(
            AuthConfig::from_header("%%%").credentials(),
            Credentials::Anonymous
        );
    }

    #[test]
    fn the_auth_field_holds_user_and_password() {
        let auth = AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("me:se:cret"),
            ..Default::default()
        };
        assert_eq!(
            auth.credentials(),
            Credentials::Basic {
                username: "me".into(),
                password: "se:cret".into()
            }
        );
    }

    #[test]
    fn login_hosts() {
        assert_eq!(login_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(login_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(login_host("https://reg.example.com/v2/"), "reg.example.com");
    }
}

/// Tries credentials on a registry's `/v2/` (`base`). Basic challenges
/// are answered directly; Bearer ones through the token service, whose
/// refresh token (if any) is returned as the identity token.
pub async fn check_login(
    http: &reqwest::Client,
    base: &str,
    credentials: &Credentials,
) -> Result<Option<String>, RegistryError> {
    let first = http
        .get(base)
        .send()
        .await
        .map_err(|e| RegistryError::unreachable(base, &e))?;
    if first.status().is_success() {
        return Ok(None);
    }
    let refused = |detail: &str| RegistryError::LoginRefused(format!("Get \"{base}\": {detail}"));
    if first.status() != reqwest::StatusCode::UNAUTHORIZED {
        let status = first.status().as_u16();
        return Err(RegistryError::from_status(
            status,
            &super::session::small_body(first).await,
        ));
    }
    let challenge = first
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Credentials::Basic { username, password } = credentials else {
        return Err(RegistryError::Protocol(format!(
            "login attempt to {base} failed with status: 401 Unauthorized"
        )));
    };
    let (scheme, params) = parse_challenge(&challenge);
    let (url, query) = if scheme.eq_ignore_ascii_case("bearer") {
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone());
        let Some(realm) = realm else {
            return Err(refused("token challenge without a realm"));
        };
        let mut query = vec![
            ("account".to_string(), username.clone()),
            ("client_id".to_string(), "docker".to_string()),
            ("offline_token".to_string(), "true".to_string()),
        ];
        if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
            query.push(("service".to_string(), service.clone()));
        }
        (realm, query)
    } else {
        (base.to_string(), Vec::new())
    };
    let response = http
        .get(&url)
        .query(&query)
        .basic_auth(username, Some(password))
        .send()
        .await
        .map_err(|e| RegistryError::unreachable(&url, &e))?;
    if !response.status().is_success() {
        // dockerd: a refused basic login is a 500 naming the status; a
        // refused token request a 401 in the registry's words.
        if url == base {
            return Err(RegistryError::Protocol(format!(
                "login attempt to {base} failed with status: {}",
                response.status()
            )));
        }
        let body = super::session::small_body(response).await;
        let detail = match RegistryError::from_status(401, &body) {
            RegistryError::Unauthorized(text) if !text.starts_with("HTTP status") => text,
            _ => "unauthorized: incorrect username or password".to_string(),
        };
        return Err(refused(&detail));
    }
    let token: serde_json::Value =
        serde_json::from_str(&super::session::small_body(response).await).unwrap_or_default();
    Ok(token
        .get("refresh_token")
        .and_then(|t| t.as_str())
        .map(str::to_string))
}

/// `Scheme k="v", k2=v2` → the scheme and its parameters.
fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            },
        };
        params.push((key, value.to_string()));
        rest = remainder.trim_start_matches(',').trim();
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod challenge_tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let (scheme, params) =
            parse_challenge(r#"Bearer realm="https://auth.io/token",service="registry.io""#);
        assert_eq!(scheme, "Bearer");
        assert_eq!(
            params,
            vec![
                ("realm".to_string(), "https://auth.io/token".to_string()),
                ("service".to_string(), "registry.io".to_string())
            ]
        );
        let (scheme, params) = parse_challenge(r#"Basic realm="basic-realm""#);
        assert_eq!((scheme.as_str(), params.len()), ("Basic", 1));
    }
}
