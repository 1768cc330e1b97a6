//! `--user`: `uid[:gid]` or names looked up in the image's `/etc/passwd`
//! and `/etc/group`, as Docker does.

use std::path::Path;

use super::ContainerError;

/// The resolved user: uid, gid, supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Resolves `user` against the root filesystem at `rootfs`.
pub fn resolve(rootfs: &Path, user: &str) -> Result<ResolvedUser, ContainerError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = image_file(rootfs, "etc/passwd");
    let (uid, default_gid, name) = lookup_user(&passwd, user_part)?;
    let groups = image_file(rootfs, "etc/group");
    let gid = match group_part {
        None | Some("") => default_gid,
        Some(g) => lookup_group(&groups, g)?,
    };
    let additional_gids = supplementary(&groups, &name, gid);
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

/// The user part: uid, primary gid and name (for supplementary groups).
/// Empty is root; a number needs no passwd entry (gid 0 and no name
/// without one); a name must have one.
fn lookup_user(passwd: &str, user: &str) -> Result<(u32, u32, String), ContainerError> {
    if user.is_empty() {
        return Ok((0, 0, "root".to_string()));
    }
    if let Ok(uid) = user.parse::<u32>() {
        let entry = find(passwd, |f| f.get(2) == Some(&user));
        let gid = entry
            .as_ref()
            .and_then(|f| f.get(3)?.parse().ok())
            .unwrap_or(0);
        let name = entry
            .and_then(|f| f.first().map(|s| s.to_string()))
            .unwrap_or_default();
        return Ok((uid, gid, name));
    }
    let entry = find(passwd, |f| f.first() == Some(&user)).ok_or_else(|| {
        ContainerError::Start(format!(
            "unable to find user {user}: no matching entries in passwd file"
        ))
    })?;
    let uid = entry.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let gid = entry.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((uid, gid, user.to_string()))
}

/// The group part: a number as given, or a name looked up in `group`.
fn lookup_group(groups: &str, group: &str) -> Result<u32, ContainerError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    find(groups, |f| f.first() == Some(&group))
        .and_then(|f| f.get(2)?.parse().ok())
        .ok_or_else(|| {
            ContainerError::Start(format!(
                "unable to find group {group}: no matching entries in group file"
            ))
        })
}

/// `--group-add`: each a group name or gid found in the image's
/// `/etc/group`, or a number (runc's `GetAdditionalGroups`, whose words
/// Docker shows).
pub fn additional_groups(rootfs: &Path, wanted: &[String]) -> Result<Vec<u32>, ContainerError> {
    let groups = image_file(rootfs, "etc/group");
    wanted
        .iter()
        .map(|g| {
            let entry = find(&groups, |f| {
                f.first() == Some(&g.as_str()) || f.get(2) == Some(&g.as_str())
            });
            if let Some(gid) = entry.and_then(|f| f.get(2)?.parse().ok()) {
                return Ok(gid);
            }
            match g.parse::<i64>() {
                Ok(n) if (0..=2_147_483_647).contains(&n) => Ok(n as u32),
                Ok(_) => Err(ContainerError::Start(
                    "uids and gids must be in range 0-2147483647".into(),
                )),
                Err(_) => Err(ContainerError::Start(format!(
                    "Unable to find group {g}: no matching entries in group file"
                ))),
            }
        })
        .collect()
}

/// An image's `etc/passwd` or `etc/group`, read without following a
/// symlink (one pointing at a host file reads as empty).
fn image_file(rootfs: &Path, rel: &str) -> String {
    crate::sys::inroot::read_text_beneath(rootfs, rel).unwrap_or_default()
}

fn find<'a>(file: &'a str, pred: impl Fn(&Vec<&'a str>) -> bool) -> Option<Vec<&'a str>> {
    file.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| pred(f))
}

fn supplementary(groups: &str, name: &str, primary: u32) -> Vec<u32> {
    if name.is_empty() {
        return Vec::new();
    }
    groups
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| {
            f.get(3)
                .is_some_and(|members| members.split(',').any(|m| m == name))
        })
        .filter_map(|f| f.get(2)?.parse().ok())
        .filter(|gid| *gid != primary)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_by_number_and_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1001:\nextra:x:2000:app\n",
        )
        .unwrap();
        assert_eq!(
            resolve(dir.path(), "").unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            resolve(dir.path(), "app").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![2000]
            }
        );
        assert_eq!(resolve(dir.path(), "1000:extra").unwrap().gid, 2000);
        assert_eq!(
            resolve(dir.path(), "4242:4343").unwrap(),
            ResolvedUser {
                uid: 4242,
                gid: 4343,
                additional_gids: vec![]
            }
        );
        assert!(resolve(dir.path(), "nobody").is_err());
        let wanted: Vec<String> = ["extra", "1001", "4444"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            additional_groups(dir.path(), &wanted).unwrap(),
            vec![2000, 1001, 4444]
        );
        let err = additional_groups(dir.path(), &["nogroup".to_string()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unable to find group nogroup: no matching entries in group file"
        );
    }
}
