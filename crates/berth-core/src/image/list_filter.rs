//! The `reference` and `dangling` filters of `GET /images/json` (`docker
//! images busybox`, `docker images 'team/*:v1'`, `docker images -f
//! dangling=true`), as moby applies them: a reference pattern is Go's
//! `path.Match` against each familiar reference (`name:tag`) and its name
//! alone; a filtered image lists only its matching references, and one
//! with none is left out.

use crate::store::ImageRecord;

/// What the image list keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Reference patterns; any may match.
    pub references: Vec<String>,
    /// `dangling=true`: only images without tags; `false`: only tagged.
    pub dangling: Option<bool>,
}

impl ListFilter {
    /// The image as the list shows it under this filter, or `None`.
    pub fn apply(&self, image: &ImageRecord) -> Option<ImageRecord> {
        if let Some(dangling) = self.dangling {
            if image.tags.is_empty() != dangling {
                return None;
            }
        }
        if self.references.is_empty() {
            return Some(image.clone());
        }
        let keep = |r: &String| self.references.iter().any(|p| familiar_match(p, r));
        let tags: Vec<String> = image.tags.iter().filter(|t| keep(t)).cloned().collect();
        let digests: Vec<String> = image.digests.iter().filter(|d| keep(d)).cloned().collect();
        if tags.is_empty() && digests.is_empty() {
            return None;
        }
        Some(ImageRecord {
            tags,
            digests,
            ..image.clone()
        })
    }
}

/// moby's `FamiliarMatch`: the pattern against `name:tag` (or
/// `name@digest`), then against the name alone.
pub fn familiar_match(pattern: &str, reference: &str) -> bool {
    if path_match(pattern, reference) {
        return true;
    }
    let name = match reference.split_once('@') {
        Some((name, _)) => name,
        None => match reference.rfind(':') {
            Some(i) if !reference[i..].contains('/') => &reference[..i],
            _ => reference,
        },
    };
    path_match(pattern, name)
}

/// Go's `path.Match`: `*` any run of non-`/` characters, `?` one non-`/`
/// character, `[…]` a class (`^` or `!` negates, `a-z` ranges), `\`
/// escapes. A malformed pattern matches nothing.
pub fn path_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len())
            .take_while(|&i| i == 0 || n[i - 1] != '/')
            .any(|i| match_from(&p[1..], &n[i..])),
        Some(_) if n.is_empty() => false,
        Some('?') => n[0] != '/' && match_from(&p[1..], &n[1..]),
        Some('[') => match class(&p[1..], n[0]) {
            Some((true, rest)) => match_from(rest, &n[1..]),
            _ => false,
        },
        Some('\\') => p.len() > 1 && p[1] == n[0] && match_from(&p[2..], &n[1..]),
        Some(c) => *c == n[0] && match_from(&p[1..], &n[1..]),
    }
}

/// A `[…]` class (after its `[`): whether `c` is in it, and the pattern
/// after its `]`; `None` if it is not closed.
fn class(p: &[char], c: char) -> Option<(bool, &[char])> {
    let (negated, mut i) = match p.first() {
        Some('^') | Some('!') => (true, 1),
        _ => (false, 0),
    };
    let mut found = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((found != negated && c != '/', &p[i + 1..]));
        }
        first = false;
        let lo = p[i];
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            found |= lo <= c && c <= p[i + 2];
            i += 3;
        } else {
            found |= lo == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_go_path_match() {
        assert!(path_match("busybox", "busybox"));
        assert!(path_match("team/*", "team/app"));
        assert!(!path_match("team/*", "team/app/x"));
        assert!(!path_match("*", "team/app"));
        assert!(path_match("b?sybox:[0-9]*", "busybox:1.36"));
        assert!(path_match("[!a]pp", "xpp"));
        assert!(!path_match("[!a]pp", "app"));
        assert!(!path_match("[unclosed", "u"));
        assert!(path_match("a\\*b", "a*b"));
    }

    #[test]
    fn a_name_matches_every_tag_of_it() {
        assert!(familiar_match("busybox", "busybox:latest"));
        assert!(familiar_match("busybox:latest", "busybox:latest"));
        assert!(!familiar_match("busybox:1", "busybox:latest"));
        assert!(familiar_match(
            "127.0.0.1:5000/app",
            "127.0.0.1:5000/app:v1"
        ));
        assert!(familiar_match("app", "app@sha256:abc"));
        assert!(!familiar_match("bus", "busybox:latest"));
    }

    #[test]
    fn a_filtered_image_lists_only_matching_references() {
        let image = ImageRecord {
            id: "sha256:x".into(),
            created_at: 0,
            size: 0,
            config: Vec::new(),
            layers: Vec::new(),
            tags: vec!["a:1".into(), "b:1".into()],
            digests: vec!["a@sha256:d".into()],
        };
        let f = ListFilter {
            references: vec!["a".into()],
            dangling: None,
        };
        let kept = f.apply(&image).expect("kept");
        assert_eq!(kept.tags, vec!["a:1".to_string()]);
        assert_eq!(kept.digests, vec!["a@sha256:d".to_string()]);
        let none = ListFilter {
            references: vec!["c".into()],
            dangling: None,
        };
        assert!(none.apply(&image).is_none());
        let dangling = ListFilter {
            references: vec![],
            dangling: Some(true),
        };
        assert!(dangling.apply(&image).is_none());
    }
}
