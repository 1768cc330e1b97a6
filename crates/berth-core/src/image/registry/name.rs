//! Remote image names as the distribution reference grammar spells them:
//! `busybox` is `docker.io/library/busybox:latest`, `127.0.0.1:5000/app@sha256:…`
//! names a manifest by digest. [`RemoteReference`] keeps the registry
//! host apart from the repository path, which is what a registry client
//! needs; [`RemoteReference::familiar`] is the form users see.

use std::fmt;

use crate::image::{ImageError, Reference};

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

/// What a reference points at in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tag(String),
    /// `sha256:<64 hex>`.
    Digest(String),
}

/// A repository on a registry, and a tag or digest in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReference {
    /// `docker.io`, `127.0.0.1:5000`, `registry.example.com`.
    pub domain: String,
    /// `library/busybox`, `team/app`.
    pub path: String,
    pub target: Target,
}

impl RemoteReference {
    /// Parses `fromImage` and `tag` as `POST /images/create` gets them:
    /// the name may carry its own tag or digest; `tag` may be a digest
    /// (the docker CLI sends `tag=sha256:…` for `pull name@sha256:…`).
    pub fn parse(name: &str, tag: &str) -> Result<Self, ImageError> {
        let invalid = || ImageError::InvalidReference(name.to_string());
        let (name, digest) = match name.split_once('@') {
            Some((n, d)) => (n, Some(parse_digest(d).ok_or_else(invalid)?)),
            None => (name, None),
        };
        let slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repo, own_tag) = match name[slash..].find(':') {
            Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
            None => (name, None),
        };
        // Validates the repository and tag with the familiar grammar.
        let familiar = Reference::parse(&format!("{repo}:{}", own_tag.unwrap_or("latest")))?;
        let target = match (digest, own_tag, tag) {
            (Some(d), _, _) => Target::Digest(d),
            (None, Some(t), _) => Target::Tag(t.to_string()),
            (None, None, "") => Target::Tag("latest".into()),
            (None, None, t) => match parse_digest(t) {
                Some(d) => Target::Digest(d),
                None => Target::Tag(Reference::from_parts(repo, t)?.tag),
            },
        };
        let (domain, path) = split_domain(repo);
        if familiar.repository.is_empty() || path.is_empty() {
            return Err(invalid());
        }
        Ok(RemoteReference {
            domain,
            path,
            target,
        })
    }

    /// The repository as users see it: `busybox`, `127.0.0.1:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DOCKER_HUB {
            self.path
                .strip_prefix("library/")
                .unwrap_or(&self.path)
                .to_string()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// `name:tag` for a tag, `name@digest` for a digest.
    pub fn familiar(&self) -> String {
        match &self.target {
            Target::Tag(t) => format!("{}:{t}", self.familiar_name()),
            Target::Digest(d) => format!("{}@{d}", self.familiar_name()),
        }
    }

    /// The tag as a local reference, if this names a tag.
    pub fn local_tag(&self) -> Option<Reference> {
        match &self.target {
            Target::Tag(t) => Some(Reference {
                repository: self.familiar_name(),
                tag: t.clone(),
            }),
            Target::Digest(_) => None,
        }
    }

    /// `name@digest`, Docker's `RepoDigests` entry for a manifest digest.
    pub fn repo_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.familiar_name())
    }

    /// The same repository at another target.
    pub fn with_target(&self, target: Target) -> Self {
        RemoteReference {
            target,
            ..self.clone()
        }
    }

    /// The reference for the registry client.
    pub fn to_oci(&self) -> oci_client::Reference {
        match &self.target {
            Target::Tag(t) => {
                oci_client::Reference::with_tag(self.domain.clone(), self.path.clone(), t.clone())
            }
            Target::Digest(d) => oci_client::Reference::with_digest(
                self.domain.clone(),
                self.path.clone(),
                d.clone(),
            ),
        }
    }
}

impl fmt::Display for RemoteReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar())
    }
}

/// `sha256:<64 lowercase hex>`, or `None`.
pub fn parse_digest(text: &str) -> Option<String> {
    let hex = text.strip_prefix("sha256:")?;
    is_sha256_hex(hex).then(|| text.to_string())
}

/// Whether `hex` is the 64 lower-case hex digits of a sha256.
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether an image name carries its own `:tag` (a colon after its last
/// slash; one before it is a registry port).
pub fn names_a_tag(name: &str) -> bool {
    name.rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
}

/// Splits `repo` into registry domain and path as the reference library
/// does: the first component is a domain when it has a `.` or a `:`, or
/// is `localhost`; otherwise the domain is Docker Hub, whose one-word
/// repositories live under `library/`.
fn split_domain(repo: &str) -> (String, String) {
    let (domain, path) = match repo.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), repo.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        domain
    };
    if domain == DOCKER_HUB && !path.contains('/') {
        return (domain, format!("library/{path}"));
    }
    (domain, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_a_colon_after_the_last_slash() {
        assert!(names_a_tag("app:1"));
        assert!(names_a_tag("127.0.0.1:5000/app:1"));
        assert!(!names_a_tag("127.0.0.1:5000/app"));
        assert!(!names_a_tag("team/app"));
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn hub_names_get_library_and_latest() {
        let r = RemoteReference::parse("busybox", "").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str()),
            ("docker.io", "library/busybox")
        );
        assert_eq!(r.target, Target::Tag("latest".into()));
        assert_eq!(r.familiar(), "busybox:latest");
        let r = RemoteReference::parse("docker.io/team/app", "v1").unwrap();
        assert_eq!(
            (r.path.as_str(), r.familiar().as_str()),
            ("team/app", "team/app:v1")
        );
    }

    #[test]
    fn a_port_or_dot_makes_a_domain() {
        let r = RemoteReference::parse("127.0.0.1:5000/app:1", "").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str()),
            ("127.0.0.1:5000", "app")
        );
        assert_eq!(r.familiar(), "127.0.0.1:5000/app:1");
        let r = RemoteReference::parse("localhost/a/b", "x").unwrap();
        assert_eq!((r.domain.as_str(), r.path.as_str()), ("localhost", "a/b"));
    }

    #[test]
    fn digests_in_the_name_or_the_tag() {
        let r = RemoteReference::parse(&format!("reg.io/app@{D}"), "").unwrap();
        assert_eq!(r.target, Target::Digest(D.into()));
        assert_eq!(r.repo_digest(D), format!("reg.io/app@{D}"));
        let r = RemoteReference::parse("reg.io/app", D).unwrap();
        assert_eq!(r.target, Target::Digest(D.into()));
        assert!(r.local_tag().is_none());
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "UPPER", "a//b", "app@sha256:short", "app:bad tag", "-x"] {
            assert!(RemoteReference::parse(bad, "").is_err(), "{bad}");
        }
        assert!(RemoteReference::parse("app", "bad tag").is_err());
    }
}
