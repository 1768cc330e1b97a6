//! AWS Signature Version 4 for S3 requests, path-style. Pure: the caller
//! gives the time, the keys and the request; the answer is the headers to
//! send. Checked against the example AWS publishes for S3.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The keys a request is signed with.
#[derive(Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys {{ access_key_id: {}, .. }}", self.access_key_id)
    }
}

/// One request to sign.
pub struct Request<'a> {
    pub method: &'a str,
    /// `host[:port]` as sent in the Host header.
    pub host: &'a str,
    /// The path, not yet encoded (`/bucket/key`).
    pub path: &'a str,
    /// Query parameters, not yet encoded.
    pub query: &'a [(&'a str, &'a str)],
    /// Extra headers to sign (lower-case names), e.g. `range`.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body.
    pub payload_sha256: &'a str,
}

/// The hex SHA-256 of `body`.
pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Percent-encodes as SigV4 wants: everything but `A-Za-z0-9-._~`, and
/// `/` too unless `keep_slash`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The query string, encoded and sorted as signed (and as sent).
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    let joined: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    joined.join("&")
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The headers to add to `req`: `x-amz-date`, `x-amz-content-sha256`,
/// the session token when there is one, and `authorization`. `amz_date`
/// is `YYYYMMDDTHHMMSSZ` (UTC).
pub fn sign(
    req: &Request<'_>,
    keys: &Keys,
    region: &str,
    amz_date: &str,
) -> Vec<(&'static str, String)> {
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), req.host.into()),
        ("x-amz-content-sha256".into(), req.payload_sha256.into()),
        ("x-amz-date".into(), amz_date.into()),
    ];
    if let Some(token) = &keys.session_token {
        headers.push(("x-amz-security-token".into(), token.clone()));
    }
    headers.extend(
        req.headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string())),
    );
    headers.sort();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(req.path, true),
        canonical_query(req.query),
        canonical_headers,
        signed,
        req.payload_sha256
    );
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac(format!("AWS4{}", keys.secret_access_key).as_bytes(), date);
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex::encode(hmac(&key, &to_sign));
    let mut out = vec![
        ("x-amz-date", amz_date.to_string()),
        ("x-amz-content-sha256", req.payload_sha256.to_string()),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                keys.access_key_id
            ),
        ),
    ];
    if let Some(token) = &keys.session_token {
        out.push(("x-amz-security-token", token.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_keys() -> Keys {
        Keys {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    /// The Authorization header of an empty GET of AWS's examples
    /// (examplebucket, us-east-1, 2013-05-24 00:00:00).
    fn example_authorization(
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> String {
        let empty = sha256_hex(b"");
        let req = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path,
            query,
            headers,
            payload_sha256: &empty,
        };
        let signed = sign(&req, &example_keys(), "us-east-1", "20130524T000000Z");
        signed
            .into_iter()
            .find(|(k, _)| *k == "authorization")
            .unwrap()
            .1
    }

    /// AWS's "GET Object" example (S3 API reference, "Signature
    /// Calculations for the Authorization Header").
    #[test]
    fn aws_get_object_example() {
        let auth = example_authorization("/test.txt", &[], &[("range", "bytes=0-9")]);
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// AWS's "GET Bucket (List Objects)" example: a signed query.
    #[test]
    fn aws_list_objects_example() {
        let auth = example_authorization("/", &[("prefix", "J"), ("max-keys", "2")], &[]);
        assert!(auth.ends_with(
            "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        ));
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("a b/c~d", true), "a%20b/c~d");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(canonical_query(&[("z", "1"), ("a", "x/y")]), "a=x%2Fy&z=1");
    }
}
