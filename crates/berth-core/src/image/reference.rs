//! Image references as Docker spells them for users: `busybox` means
//! `busybox:latest`, `docker.io/library/busybox:1` means `busybox:1`.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

use super::ImageError;

/// A repository and tag, in Docker's familiar form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub repository: String,
    pub tag: String,
}

const DEFAULT_TAG: &str = "latest";

fn repository_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let component = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*";
        let host = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?";
        Regex::new(&format!("^{host}{component}(?:/{component})*$")).expect("static pattern")
    })
}

fn tag_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[\w][\w.-]{0,127}$").expect("static pattern"))
}

impl Reference {
    /// Parses `repo[:tag]`, normalising to the familiar form.
    pub fn parse(input: &str) -> Result<Self, ImageError> {
        let invalid = || ImageError::InvalidReference(input.to_string());
        if input.contains('@') {
            return Err(ImageError::InvalidReference(format!(
                "{input}: digest references are not supported"
            )));
        }
        // A colon after the last slash separates the tag (a colon before it
        // belongs to a registry port).
        let slash = input.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match input[slash..].find(':') {
            Some(i) => (&input[..slash + i], &input[slash + i + 1..]),
            None => (input, DEFAULT_TAG),
        };
        if !repository_re().is_match(repo) || !tag_re().is_match(tag) || repo.len() > 255 {
            return Err(invalid());
        }
        Ok(Reference {
            repository: familiar(repo),
            tag: tag.to_string(),
        })
    }

    /// Builds from separate `repo` and `tag` query parameters (`tag` may be
    /// empty, meaning `latest`, or `repo` may carry its own tag).
    pub fn from_parts(repo: &str, tag: &str) -> Result<Self, ImageError> {
        if tag.is_empty() {
            Self::parse(repo)
        } else {
            Self::parse(&format!("{repo}:{tag}"))
        }
    }
}

/// Strips Docker Hub's default host and `library/` namespace.
fn familiar(repo: &str) -> String {
    let repo = repo
        .strip_prefix("docker.io/")
        .or_else(|| repo.strip_prefix("index.docker.io/"))
        .unwrap_or(repo);
    repo.strip_prefix("library/").unwrap_or(repo).to_string()
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_docker() {
        let cases = [
            ("busybox", "busybox:latest"),
            ("busybox:1.36", "busybox:1.36"),
            ("docker.io/library/busybox", "busybox:latest"),
            ("localhost:5000/team/app:v2", "localhost:5000/team/app:v2"),
            ("my-img_x", "my-img_x:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(Reference::parse(input).unwrap().to_string(), want);
        }
        assert_eq!(
            Reference::from_parts("img", "t").unwrap().to_string(),
            "img:t"
        );
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "",
            "UPPER",
            "a b",
            "img:",
            "img:-x",
            "../x",
            "img@sha256:00",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
