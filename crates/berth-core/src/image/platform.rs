//! Platforms (`os/arch[/variant]`) as containerd's `platforms` package
//! reads and compares them: `?platform=` on container create now, the
//! platform resolver of registry pulls next.

use std::fmt;

/// One platform, normalised (`x86_64` is `amd64`, `aarch64` is `arm64`
/// whose default variant `v8` is left empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: String,
}

const KNOWN_OS: [&str; 12] = [
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "linux",
    "netbsd",
    "openbsd",
    "solaris",
    "windows",
];

const KNOWN_ARCH: [&str; 14] = [
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64",
    "ppc64le", "riscv64", "s390x", "wasm",
];

impl Platform {
    /// `os`, `arch`, `os/arch` or `os/arch/variant`, as `platforms.Parse`
    /// takes them; one word is an OS if it names one, else an architecture
    /// of this host's OS.
    pub fn parse(spec: &str) -> Result<Platform, String> {
        let lower = spec.to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let unknown =
            || format!("{spec:?}: unknown operating system or architecture: invalid argument");
        let platform = match parts.as_slice() {
            [one] if KNOWN_OS.contains(one) => Platform {
                os: one.to_string(),
                architecture: super::config::go_arch().into(),
                ..Default::default()
            },
            [one] => Platform::of("linux", one, "")
                .filter(|p| p.is_known())
                .ok_or_else(unknown)?,
            [os, arch] => Platform::of(os, arch, "").ok_or_else(unknown)?,
            [os, arch, variant] => Platform::of(os, arch, variant).ok_or_else(unknown)?,
            _ => {
                return Err(format!(
                    "{spec:?}: cannot parse platform specifier: invalid argument"
                ))
            }
        };
        if !platform.is_known() {
            return Err(unknown());
        }
        Ok(platform)
    }

    /// A platform from its parts, normalised; `None` for an empty part.
    pub fn of(os: &str, arch: &str, variant: &str) -> Option<Platform> {
        if os.is_empty() || arch.is_empty() {
            return None;
        }
        let (architecture, variant) = normalize_arch(arch, variant);
        Some(Platform {
            os: os.to_ascii_lowercase(),
            architecture,
            variant,
        })
    }

    fn is_known(&self) -> bool {
        KNOWN_OS.contains(&self.os.as_str()) && KNOWN_ARCH.contains(&self.architecture.as_str())
    }

    /// Whether an image of platform `image` runs here when `self` was
    /// asked for: same OS and architecture, and the variant asked for (if
    /// any) equal; an image that names no variant matches any.
    pub fn matches(&self, image: &Platform) -> bool {
        self.os == image.os
            && self.architecture == image.architecture
            && (self.variant.is_empty()
                || image.variant.is_empty()
                || self.variant == image.variant)
    }
}

/// containerd's normalisation of architecture names and variants.
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    let (a, v) = match arch.as_str() {
        "i386" => ("386", ""),
        "x86_64" | "x86-64" | "amd64" => (
            "amd64",
            if variant == "v1" {
                ""
            } else {
                variant.as_str()
            },
        ),
        "aarch64" | "arm64" => (
            "arm64",
            if matches!(variant.as_str(), "8" | "v8") {
                ""
            } else {
                variant.as_str()
            },
        ),
        "armhf" => ("arm", "v7"),
        "armel" => ("arm", "v6"),
        "arm" => (
            "arm",
            match variant.as_str() {
                "" | "7" => "v7",
                "5" | "6" | "8" => return ("arm".into(), format!("v{variant}")),
                other => other,
            },
        ),
        other => (other, variant.as_str()),
    };
    (a.to_string(), v.to_string())
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifiers_parse_and_normalise_as_containerd() {
        let p = |s: &str| Platform::parse(s).unwrap().to_string();
        assert_eq!(p("linux/amd64"), "linux/amd64");
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p("Linux/AArch64/v8"), "linux/arm64");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/armhf"), "linux/arm/v7");
        assert_eq!(p("linux/arm/v6"), "linux/arm/v6");
        assert_eq!(p("arm64"), "linux/arm64");
        assert!(p("linux").starts_with("linux/"));
        assert!(Platform::parse("linux/amd64/v2/x")
            .unwrap_err()
            .contains("cannot parse"));
        for bad in ["", "nope", "linux/", "/amd64", "plan9/amd64", "linux/z80"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching_ignores_a_missing_variant() {
        let want = Platform::parse("linux/arm/v7").unwrap();
        let image = Platform::of("linux", "arm", "").unwrap();
        assert!(want.matches(&image));
        assert!(!want.matches(&Platform::of("linux", "arm", "v6").unwrap()));
        let amd = Platform::parse("linux/amd64").unwrap();
        assert!(amd.matches(&Platform::of("linux", "x86_64", "").unwrap()));
        assert!(!amd.matches(&Platform::of("linux", "arm64", "").unwrap()));
        assert!(!amd.matches(&Platform::of("windows", "amd64", "").unwrap()));
    }
}
