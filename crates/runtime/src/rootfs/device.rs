//! /dev inside the container: the default device nodes, the spec's
//! `linux.devices`, the /dev symlinks, and the console bind.
//!
//! In a user namespace mknod is refused, so each device is a bind mount of the
//! host's node onto an empty file instead.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::stat::SFlag;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};

use super::safe_path::Create;
use super::syscall::{DeviceNode, Syscall};
use super::{RootfsError, RootfsOptions};

/// The nodes every container gets (runc's defaults), mode 0666, owned by root.
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn default_devices() -> impl Iterator<Item = DeviceNode> {
    DEFAULT_DEVICES
        .iter()
        .map(|(path, major, minor)| DeviceNode {
            path: PathBuf::from(path),
            kind: SFlag::S_IFCHR,
            major: *major,
            minor: *minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
}

fn spec_device(device: &LinuxDevice) -> Result<DeviceNode, RootfsError> {
    let invalid = |reason: &str| RootfsError::Invalid {
        destination: device.path().clone(),
        reason: reason.to_string(),
    };
    let kind = match device.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => return Err(invalid("device type \"a\" cannot be created")),
    };
    let (major, minor) = match kind {
        SFlag::S_IFIFO => (0, 0),
        _ => (
            u64::try_from(device.major()).map_err(|_| invalid("negative major number"))?,
            u64::try_from(device.minor()).map_err(|_| invalid("negative minor number"))?,
        ),
    };
    if !device.path().is_absolute() {
        return Err(invalid("device path must be absolute"));
    }
    Ok(DeviceNode {
        path: device.path().clone(),
        kind,
        major,
        minor,
        mode: device.file_mode().unwrap_or(0o666) & 0o7777,
        uid: device.uid().unwrap_or(0),
        gid: device.gid().unwrap_or(0),
    })
}

/// Whether the spec bind-mounts /dev from elsewhere: then /dev is not ours to fill
/// (it may be the host's).
pub fn dev_is_bind(spec: &Spec) -> bool {
    spec.mounts().iter().flatten().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    })
}

fn has_mount(spec: &Spec, destination: &str, fstype: &str) -> bool {
    spec.mounts()
        .iter()
        .flatten()
        .any(|m| m.destination() == Path::new(destination) && m.typ().as_deref() == Some(fstype))
}

/// Default devices then the spec's (a spec entry replaces a default at the same path).
pub fn create_devices(
    sys: &dyn Syscall,
    spec: &Spec,
    opts: &RootfsOptions,
) -> Result<(), RootfsError> {
    let spec_devices = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default()
        .iter()
        .map(spec_device)
        .collect::<Result<Vec<_>, _>>()?;
    let defaults = default_devices().filter(|d| !spec_devices.iter().any(|s| s.path == d.path));
    for node in defaults.chain(spec_devices.iter().cloned()) {
        create_device(sys, opts, &node)?;
    }
    Ok(())
}

fn create_device(
    sys: &dyn Syscall,
    opts: &RootfsOptions,
    node: &DeviceNode,
) -> Result<(), RootfsError> {
    let device_error = |source| RootfsError::Device {
        path: node.path.clone(),
        source,
    };
    if !opts.in_user_ns {
        return sys.create_device(opts.rootfs, node).map_err(device_error);
    }
    let target = sys
        .resolve(opts.rootfs, &node.path, Create::File)
        .map_err(device_error)?;
    sys.mount(
        Some(&node.path),
        &target.mount_path(),
        Some("bind"),
        MsFlags::MS_BIND,
        None,
    )
    .map_err(|source| RootfsError::Mount {
        destination: node.path.clone(),
        what: format!("bind host device {:?}", node.path),
        source,
    })
}

/// /dev/fd, /dev/std{in,out,err}, /dev/core when /proc is mounted, and /dev/ptmx
/// pointing into the container's devpts instance when there is one.
pub fn create_dev_symlinks(
    sys: &dyn Syscall,
    spec: &Spec,
    opts: &RootfsOptions,
) -> Result<(), RootfsError> {
    let mut links = vec![
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ];
    if has_mount(spec, "/proc", "proc") {
        links.push(("/dev/core", "/proc/kcore"));
    }
    let link_error = |link: &str| {
        let link = PathBuf::from(link);
        move |source| RootfsError::Device { path: link, source }
    };
    for (link, target) in links {
        sys.symlink(opts.rootfs, Path::new(link), Path::new(target))
            .map_err(link_error(link))?;
    }
    if has_mount(spec, "/dev/pts", "devpts") {
        sys.remove(opts.rootfs, Path::new("/dev/ptmx"))
            .map_err(link_error("/dev/ptmx"))?;
        sys.symlink(opts.rootfs, Path::new("/dev/ptmx"), Path::new("pts/ptmx"))
            .map_err(link_error("/dev/ptmx"))?;
    }
    Ok(())
}

/// Bind the console's pty slave onto `<rootfs>/dev/console` (an empty file is
/// created first). With `rootfs` = `/` this works after the root is entered too.
pub fn bind_console_with(
    sys: &dyn Syscall,
    rootfs: &Path,
    slave: &Path,
) -> Result<(), RootfsError> {
    let console = Path::new("/dev/console");
    let target = sys
        .resolve(rootfs, console, Create::File)
        .map_err(|source| RootfsError::Device {
            path: console.to_path_buf(),
            source,
        })?;
    sys.mount(
        Some(slave),
        &target.mount_path(),
        Some("bind"),
        MsFlags::MS_BIND,
        None,
    )
    .map_err(|source| RootfsError::Mount {
        destination: console.to_path_buf(),
        what: format!("bind console {slave:?}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceBuilder;

    #[test]
    fn spec_devices_convert() {
        let dev = LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .file_mode(0o20640u32)
            .uid(1u32)
            .gid(2u32)
            .build()
            .unwrap();
        let node = spec_device(&dev).unwrap();
        assert_eq!((node.major, node.minor, node.mode), (10, 229, 0o640));
        assert_eq!((node.uid, node.gid, node.kind), (1, 2, SFlag::S_IFCHR));

        let fifo = LinuxDeviceBuilder::default()
            .path("/dev/fifo")
            .typ(LinuxDeviceType::P)
            .build()
            .unwrap();
        let node = spec_device(&fifo).unwrap();
        assert_eq!((node.kind, node.mode), (SFlag::S_IFIFO, 0o666));

        let all = LinuxDeviceBuilder::default()
            .path("/dev/x")
            .typ(LinuxDeviceType::A)
            .build()
            .unwrap();
        assert!(spec_device(&all).is_err());
    }
}
