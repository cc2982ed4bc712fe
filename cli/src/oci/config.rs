//! How an image says to run it: its config's `Env`, `WorkingDir`, `User`, `Entrypoint` and
//! `Cmd`, which the user's own options override as `docker run` does.

use crate::rootfs;
use anyhow::{bail, Result};
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::Path;

/// The run parameters of an image's config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunConfig {
    /// `NAME=VALUE` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl RunConfig {
    pub fn of(image: &ImageConfiguration) -> RunConfig {
        let Some(config) = image.config() else { return RunConfig::default() };
        let non_empty = |text: &Option<String>| text.clone().filter(|text| !text.is_empty());
        RunConfig {
            env: config.env().clone().unwrap_or_default(),
            working_dir: non_empty(config.working_dir()),
            user: non_empty(config.user()),
            entrypoint: config.entrypoint().clone().unwrap_or_default(),
            cmd: config.cmd().clone().unwrap_or_default(),
        }
    }

    /// What runs: the Entrypoint followed by `given`, or by the Cmd when nothing is given (a
    /// given command replaces the Cmd, not the Entrypoint, as with `docker run IMAGE ARGS`).
    pub fn command(&self, given: &[OsString], image: &str) -> Result<Vec<OsString>> {
        let tail: Vec<OsString> =
            if given.is_empty() { self.cmd.iter().map(OsString::from).collect() } else { given.to_vec() };
        let command: Vec<OsString> = self.entrypoint.iter().map(OsString::from).chain(tail).collect();
        if command.is_empty() {
            bail!("image {image} has no Entrypoint or Cmd: give the command to run after --");
        }
        Ok(command)
    }

    /// The WorkingDir as an absolute path (runtimes take a relative one from `/`).
    pub fn working_dir(&self) -> Option<String> {
        let dir = self.working_dir.as_deref()?;
        Some(if dir.starts_with('/') { dir.to_string() } else { format!("/{dir}") })
    }
}

/// The image's `User`, resolved once against the image's own `/etc/passwd` and `/etc/group`
/// (which flint does not keep) and cached beside its root image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserLookup {
    Found {
        uid: u32,
        gid: u32,
        home: Option<String>,
    },
    /// Why it could not be; an error only when the user gives no `--user`.
    Unresolved(String),
}

/// Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid`, `uid:group`, `user:gid`) in the
/// root tree `tree`, as runtimes do: a numeric uid missing from `/etc/passwd` gets group 0.
pub fn lookup_user(spec: &str, tree: &Path) -> UserLookup {
    match resolve_user(spec, tree) {
        Ok((uid, gid, home)) => UserLookup::Found { uid, gid, home },
        Err(error) => UserLookup::Unresolved(format!("{error:#}")),
    }
}

fn resolve_user(spec: &str, tree: &Path) -> Result<(u32, u32, Option<String>)> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let passwd = database(tree, "passwd");
    let number = |text: &str| text.parse::<u32>().ok().filter(|&n| n != u32::MAX);
    // name:password:uid:gid:gecos:home:shell
    let entry = |matches: &dyn Fn(&[&str]) -> bool| {
        passwd.as_deref().unwrap_or_default().lines().map(|line| line.split(':').collect::<Vec<_>>()).find(|fields| {
            fields.len() >= 6 && number(fields[2]).is_some() && number(fields[3]).is_some() && matches(fields)
        })
    };
    let (uid, primary, home) = match number(user) {
        Some(uid) => match entry(&|fields| number(fields[2]) == Some(uid)) {
            Some(fields) => (uid, number(fields[3]), Some(fields[5].to_string())),
            None => (uid, Some(0), None),
        },
        None => match entry(&|fields| fields[0] == user) {
            Some(fields) => (number(fields[2]).unwrap_or_default(), number(fields[3]), Some(fields[5].to_string())),
            None => bail!(
                "the image's User {spec:?}: no user {user:?} in its /etc/passwd: pass --user UID[:GID] to choose one"
            ),
        },
    };
    let gid = match group {
        None => primary.unwrap_or_default(),
        Some(group) => match number(group) {
            Some(gid) => gid,
            None => {
                let groups = database(tree, "group");
                // name:password:gid:members
                let found = groups.as_deref().unwrap_or_default().lines().find_map(|line| {
                    let fields: Vec<&str> = line.split(':').collect();
                    (fields.len() >= 3 && fields[0] == group).then(|| number(fields[2])).flatten()
                });
                match found {
                    Some(gid) => gid,
                    None => bail!(
                        "the image's User {spec:?}: no group {group:?} in its /etc/group: pass --user UID[:GID] to choose one"
                    ),
                }
            }
        },
    };
    Ok((uid, gid, home.filter(|home| home.starts_with('/'))))
}

/// `/etc/NAME` of the tree (followed as the guest would), if it is there and of sane size.
fn database(tree: &Path, name: &str) -> Option<String> {
    const MAX: u64 = 4 << 20;
    let path = rootfs::resolve_in_root(tree, format!("/etc/{name}").as_bytes())?;
    let meta = std::fs::metadata(&path).ok()?;
    (meta.is_file() && meta.len() <= MAX)
        .then(|| std::fs::read(&path).ok())
        .flatten()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::TempDir;

    #[test]
    fn a_given_command_replaces_cmd_and_keeps_the_entrypoint() {
        let config = RunConfig {
            entrypoint: vec!["/bin/tini".into(), "--".into()],
            cmd: vec!["sh".into()],
            ..RunConfig::default()
        };
        assert_eq!(config.command(&[], "i").unwrap(), ["/bin/tini", "--", "sh"]);
        assert_eq!(config.command(&["echo".into(), "hi".into()], "i").unwrap(), ["/bin/tini", "--", "echo", "hi"]);
        let bare = RunConfig::default();
        assert_eq!(bare.command(&["true".into()], "i").unwrap(), ["true"]);
        let error = bare.command(&[], "img").unwrap_err().to_string();
        assert!(error.contains("image img has no Entrypoint or Cmd"), "{error}");
        let relative = RunConfig { working_dir: Some("app".into()), ..RunConfig::default() };
        assert_eq!(relative.working_dir().as_deref(), Some("/app"));
    }

    #[test]
    fn users_resolve_through_the_image_databases() {
        let tree = TempDir::new("flint-oci-user").unwrap();
        std::fs::create_dir(tree.path().join("etc")).unwrap();
        std::fs::write(
            tree.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(tree.path().join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        let found = |uid, gid, home: Option<&str>| UserLookup::Found { uid, gid, home: home.map(String::from) };
        let t = tree.path();
        assert_eq!(lookup_user("app", t), found(1000, 1001, Some("/home/app")));
        assert_eq!(lookup_user("app:staff", t), found(1000, 50, Some("/home/app")));
        assert_eq!(lookup_user("1000:7", t), found(1000, 7, Some("/home/app")));
        assert_eq!(lookup_user("4242", t), found(4242, 0, None));
        assert_eq!(lookup_user("0:staff", t), found(0, 50, Some("/root")));
        let UserLookup::Unresolved(why) = lookup_user("nobody", t) else { panic!() };
        assert!(why.contains("no user \"nobody\" in its /etc/passwd: pass --user"), "{why}");
        let UserLookup::Unresolved(why) = lookup_user("app:wheel", t) else { panic!() };
        assert!(why.contains("no group \"wheel\""), "{why}");
    }
}
