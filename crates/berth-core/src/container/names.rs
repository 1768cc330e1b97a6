//! Container names: Docker's rule, and generated `adjective_surname` names.

use std::sync::OnceLock;

use rand::seq::SliceRandom;
use regex::Regex;

use super::ContainerError;

/// Checks a user-given name (a leading `/` is allowed and dropped).
pub fn normalize(name: &str) -> Result<String, ContainerError> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re =
        RE.get_or_init(|| Regex::new("^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$").expect("static pattern"));
    if !re.is_match(name) || name.len() > 255 {
        return Err(ContainerError::InvalidName(name.to_string()));
    }
    Ok(name.trim_start_matches('/').to_string())
}

const LEFT: &[&str] = &[
    "admiring",
    "brave",
    "calm",
    "clever",
    "dazzling",
    "eager",
    "elated",
    "fervent",
    "focused",
    "gallant",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "loving",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
];

const RIGHT: &[&str] = &[
    "agnesi",
    "babbage",
    "bohr",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "faraday",
    "feynman",
    "galileo",
    "goldwasser",
    "hopper",
    "hypatia",
    "kepler",
    "knuth",
    "lamarr",
    "lovelace",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "thompson",
    "turing",
    "villani",
    "wozniak",
    "yonath",
    "zhukovsky",
];

/// A random `adjective_surname`; `attempt` > 0 appends a digit, as Docker
/// does after a collision.
pub fn generate(attempt: u32) -> String {
    let mut rng = rand::thread_rng();
    let left = LEFT.choose(&mut rng).expect("non-empty");
    let right = RIGHT.choose(&mut rng).expect("non-empty");
    if attempt == 0 {
        format!("{left}_{right}")
    } else {
        format!("{left}_{right}{}", attempt % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker() {
        assert_eq!(normalize("/web").unwrap(), "web");
        assert_eq!(normalize("db_1.x-y").unwrap(), "db_1.x-y");
        for bad in ["a", "-x", "a b", "a/b", ""] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
        assert!(normalize(&generate(0)).is_ok());
    }
}
