//! `docker commit`: the container's changes (its overlay upper directory, diffed into
//! a layer tar) on top of its image's layers, with a config made of the image's, the
//! container's own settings and the `--change` instructions, registered in the image
//! store as a new image.

use std::collections::BTreeMap;

use berth_image::model::{
    host_platform, media_type, ContainerConfig as ImageDefaults, Descriptor, History, ImageConfig,
    Manifest, RootFs,
};
use berth_image::reference::Reference;
use berth_image::service::Registration;
use berth_image::{Digest, ImageError, Images};

use crate::container::Container;
use crate::engine::{Engine, EngineError, Result};
use crate::types::ContainerConfig;

/// What `POST /commit` takes besides the container.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `repo` and `tag`: the name of the new image, if any.
    pub repo: String,
    pub tag: String,
    pub comment: String,
    pub author: String,
    /// Dockerfile instructions (`--change`).
    pub changes: Vec<String>,
    /// Freeze the container while its changes are read (`--pause`, default true).
    pub pause: bool,
}

fn image_error(e: ImageError) -> EngineError {
    match e {
        ImageError::ImageNotFound(r) => EngineError::NotFound(format!("No such image: {r}")),
        ImageError::InvalidReference { .. } => EngineError::Invalid(e.to_string()),
        other => EngineError::Internal(other.to_string()),
    }
}

/// Env entries of `over` replace those of `base` with the same name.
fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let key = |e: &String| e.split_once('=').map_or(e.clone(), |(k, _)| k.to_string());
    let mut out: Vec<String> = base
        .iter()
        .filter(|b| !over.iter().any(|o| key(o) == key(b)))
        .cloned()
        .collect();
    out.extend(over.iter().cloned());
    out
}

/// The new image's run-time config: the container's settings where it has them, the
/// image's otherwise, as dockerd merges them.
pub fn merge_config(image: &ImageDefaults, c: &ContainerConfig) -> ImageDefaults {
    let mut out = image.clone();
    if c.cmd.is_some() {
        out.cmd = c.cmd.clone();
    }
    if c.entrypoint.is_some() {
        out.entrypoint = c.entrypoint.clone();
        if c.cmd.is_none() {
            // A new entrypoint without a command drops the image's command, as at run.
            out.cmd = None;
        }
    }
    if !c.env.is_empty() {
        out.env = Some(merge_env(out.env.as_deref().unwrap_or(&[]), &c.env));
    }
    if !c.working_dir.is_empty() {
        out.working_dir = Some(c.working_dir.clone());
    }
    if !c.user.is_empty() {
        out.user = Some(c.user.clone());
    }
    if !c.labels.is_empty() {
        let labels = out.labels.get_or_insert_with(Default::default);
        for (k, v) in &c.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    if let Some(ports) = &c.exposed_ports {
        let all = out.exposed_ports.get_or_insert_with(BTreeMap::new);
        for (p, v) in ports {
            all.insert(p.clone(), v.clone());
        }
    }
    if let Some(vols) = &c.volumes {
        let all = out.volumes.get_or_insert_with(BTreeMap::new);
        for (p, v) in vols {
            all.insert(p.clone(), v.clone());
        }
    }
    if c.stop_signal.is_some() {
        out.stop_signal = c.stop_signal.clone();
    }
    out
}

impl Engine {
    /// `POST /commit`: the new image's ID (`sha256:…`).
    pub fn commit(&self, key: &str, images: &Images, opts: &CommitOptions) -> Result<String> {
        let c = self.get(key)?;
        let reference = match (opts.repo.as_str(), opts.tag.as_str()) {
            ("", _) => None,
            (repo, "") => Some(Reference::parse(repo).map_err(image_error)?),
            (repo, tag) => Some(Reference::parse(&format!("{repo}:{tag}")).map_err(image_error)?),
        };
        let parent_id: Digest = c.image.parse().map_err(image_error)?;
        let parent = images.config(&parent_id).map_err(image_error)?;
        let parent_record = images
            .store()
            .get(&parent_id)
            .ok_or_else(|| EngineError::NotFound(format!("No such image: {}", c.image)))?;
        let defaults = merge_config(&parent.config.clone().unwrap_or_default(), &c.config);
        let defaults =
            crate::changes::apply(&defaults, &opts.changes).map_err(EngineError::Invalid)?;

        let paused_here =
            opts.pause && c.state.running && !c.state.paused && self.pause(&c.id).is_ok();
        let layer = self.with_rootfs(&c.id, |_, rootfs| {
            let mut ingest = images.content().writer(None, None).map_err(image_error)?;
            ingest.set_context(&format!("commit of {}", c.id));
            let ingest =
                berth_image::layer::write_diff(std::path::Path::new(&rootfs.upper_dir), ingest)
                    .map_err(image_error)?;
            let size = ingest.written();
            Ok((ingest.commit().map_err(image_error)?, size))
        });
        if paused_here {
            let _ = self.unpause(&c.id);
        }
        let (blob, size) = layer?;
        let mut lease = images.content().lease();
        lease.protect(&blob);
        self.register_commit(
            images,
            &c,
            &parent,
            &parent_record,
            defaults,
            (blob, size),
            reference,
            opts,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn register_commit(
        &self,
        images: &Images,
        c: &Container,
        parent: &ImageConfig,
        parent_record: &berth_image::store::ImageRecord,
        defaults: ImageDefaults,
        (blob, size): (Digest, u64),
        reference: Option<Reference>,
        opts: &CommitOptions,
    ) -> Result<String> {
        let mut lease = images.content().lease();
        let created = berth_runtime::state::now_rfc3339();
        let mut diff_ids = parent.rootfs.diff_ids.clone();
        // Stored uncompressed: the blob's digest is the diff ID.
        diff_ids.push(blob.clone());
        let mut history = parent.history.clone();
        let created_by = std::iter::once(c.path.clone())
            .chain(c.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        history.push(History {
            created: Some(created.clone()),
            created_by: Some(created_by),
            author: (!opts.author.is_empty()).then(|| opts.author.clone()),
            comment: (!opts.comment.is_empty()).then(|| opts.comment.clone()),
            empty_layer: None,
        });
        let platform = host_platform();
        let config = ImageConfig {
            created: Some(created),
            author: (!opts.author.is_empty()).then(|| opts.author.clone()),
            architecture: if parent.architecture.is_empty() {
                platform.architecture
            } else {
                parent.architecture.clone()
            },
            os: if parent.os.is_empty() {
                platform.os
            } else {
                parent.os.clone()
            },
            variant: parent.variant.clone(),
            config: Some(defaults),
            rootfs: RootFs {
                typ: "layers".into(),
                diff_ids,
            },
            history,
            other: Default::default(),
        };
        let (config_digest, config_size) = images.put_json(&config).map_err(image_error)?;
        lease.protect(&config_digest);
        // The parent's layers as blobs; they are unpacked already, so only their
        // digests matter to registration.
        let from_manifest = parent_record
            .manifest_digests
            .first()
            .and_then(|m| images.content().read_blob(m, 8 << 20).ok())
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
            .map(|m| m.layers)
            .filter(|l| l.len() == parent.rootfs.diff_ids.len());
        let mut layers: Vec<Descriptor> = from_manifest.unwrap_or_else(|| {
            parent_record
                .layer_digests
                .iter()
                .map(|d| {
                    let size = images.content().size(d).unwrap_or(0);
                    Descriptor::new(media_type::OCI_LAYER_GZIP, d.clone(), size)
                })
                .collect()
        });
        if layers.len() != parent.rootfs.diff_ids.len() {
            layers = parent
                .rootfs
                .diff_ids
                .iter()
                .map(|d| Descriptor::new(media_type::OCI_LAYER, d.clone(), 0))
                .collect();
        }
        layers.push(Descriptor::new(media_type::OCI_LAYER, blob, size));
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            config: Descriptor::new(media_type::OCI_CONFIG, config_digest.clone(), config_size),
            layers: layers.clone(),
            annotations: None,
        };
        let (manifest_digest, _) = images.put_json(&manifest).map_err(image_error)?;
        lease.protect(&manifest_digest);
        let image_ref = reference
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default();
        let name = reference
            .as_ref()
            .map_or_else(|| format!("commit of {}", c.short_id()), |r| r.to_string());
        let record = images
            .register(&Registration {
                image: &name,
                config_digest: &config_digest,
                layers: &layers,
                manifest: Some(&manifest_digest),
                repo_tags: reference.map(|r| vec![r.to_string()]).unwrap_or_default(),
                repo_digests: Vec::new(),
                parallel: 1,
            })
            .map_err(image_error)?;
        // Remember the parent (`docker rmi` of an untagged parent is then refused).
        let mut with_parent = record.clone();
        with_parent.parent = Some(parent_record.id.clone());
        let record = images.store().add(with_parent).map_err(image_error)?;
        drop(lease);
        self.container_event(
            c,
            "commit",
            &[
                ("comment", opts.comment.clone()),
                ("imageID", record.id.to_string()),
                ("imageRef", image_ref),
            ],
        );
        Ok(record.id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_settings_override_the_image() {
        let image = ImageDefaults {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            ..Default::default()
        };
        let c = ContainerConfig {
            env: vec!["A=2".into(), "B=3".into()],
            working_dir: "/srv".into(),
            entrypoint: Some(vec!["/bin/app".into()]),
            ..Default::default()
        };
        let out = merge_config(&image, &c);
        assert_eq!(
            out.env,
            Some(vec!["PATH=/bin".into(), "A=2".into(), "B=3".into()])
        );
        assert_eq!(out.working_dir.as_deref(), Some("/srv"));
        assert_eq!(out.entrypoint, Some(vec!["/bin/app".to_string()]));
        assert_eq!(out.cmd, None);
        let same = merge_config(&image, &ContainerConfig::default());
        assert_eq!(same.cmd, Some(vec!["sh".to_string()]));
    }
}
