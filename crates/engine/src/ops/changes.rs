//! `docker diff`: what the container changed, read from its overlay upper directory
//! against the image's layers. The files berthd itself bind-mounts over (hostname,
//! hosts, resolv.conf) and the mount points the runtime creates are not the user's
//! changes: Docker keeps them in an init layer, so they are left out here too.

use std::path::PathBuf;

use berth_image::layer::{Change, ChangeKind};

use crate::engine::{Engine, EngineError, Result};

/// What Docker's init layer holds: never reported as a change.
const INIT_PATHS: &[&str] = &[
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/mtab",
    "/.dockerenv",
    "/dev",
    "/proc",
    "/sys",
];

fn under(path: &str, dir: &str) -> bool {
    path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// Drops the init layer's paths (all of /dev: the runtime mounts a tmpfs there), and the directories reported modified only because
/// one of those was made in them.
pub fn without_init_paths(changes: Vec<Change>) -> Vec<Change> {
    let (hidden, kept): (Vec<Change>, Vec<Change>) = changes
        .into_iter()
        .partition(|c| INIT_PATHS.iter().any(|p| under(&c.path, p)));
    kept.iter()
        .filter(|c| {
            if c.kind != ChangeKind::Modified {
                return true;
            }
            let parent_of_hidden = hidden.iter().any(|h| under(&h.path, &c.path));
            let has_own_child = kept
                .iter()
                .any(|k| k.path != c.path && under(&k.path, &c.path));
            !parent_of_hidden || has_own_child
        })
        .cloned()
        .collect()
}

impl Engine {
    /// `GET /containers/{id}/changes`, sorted by path.
    pub fn changes(&self, key: &str) -> Result<Vec<Change>> {
        self.with_rootfs(key, |_, rootfs| {
            let lowers: Vec<PathBuf> = rootfs
                .lower_dir
                .split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect();
            let all = berth_image::layer::changes(std::path::Path::new(&rootfs.upper_dir), &lowers)
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            Ok(without_init_paths(all))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, kind: ChangeKind) -> Change {
        Change {
            path: path.into(),
            kind,
        }
    }

    #[test]
    fn init_layer_paths_are_hidden() {
        let out = without_init_paths(vec![
            change("/etc", ChangeKind::Modified),
            change("/etc/hostname", ChangeKind::Added),
            change("/tmp", ChangeKind::Modified),
            change("/tmp/x", ChangeKind::Added),
            change("/etcetera", ChangeKind::Added),
            change("/proc", ChangeKind::Added),
        ]);
        assert_eq!(
            out,
            vec![
                change("/tmp", ChangeKind::Modified),
                change("/tmp/x", ChangeKind::Added),
                change("/etcetera", ChangeKind::Added),
            ]
        );
    }
}
