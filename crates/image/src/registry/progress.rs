//! Per-layer progress of a pull or push, in the phases Docker reports. The engine turns
//! each event into one JSON progress message (`{"status": "Downloading", "id":
//! "<short id>", "progressDetail": {"current": …, "total": …}}`).

use crate::digest::Digest;

/// One layer's (or config's) progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    pub digest: Digest,
    pub phase: Phase,
}

impl ProgressEvent {
    pub fn new(digest: Digest, phase: Phase) -> Self {
        ProgressEvent { digest, phase }
    }

    /// The `id` Docker shows: the first 12 hex characters of the digest.
    pub fn id(&self) -> &str {
        self.digest.short()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Pull: the layer is known and queued ("Pulling fs layer").
    PullingFsLayer,
    /// Pull: waiting for a download slot.
    Waiting,
    Downloading {
        current: u64,
        total: Option<u64>,
    },
    Verifying,
    DownloadComplete,
    Extracting {
        current: u64,
        total: Option<u64>,
    },
    PullComplete,
    /// Pull: the layer is already in the store.
    AlreadyExists,
    /// Push: the layer is being prepared ("Preparing").
    Preparing,
    Pushing {
        current: u64,
        total: Option<u64>,
    },
    Pushed,
    /// Push: the registry already has the blob.
    LayerAlreadyExists,
    /// Push: the blob was mounted from another repository of the same registry.
    MountedFrom {
        repository: String,
    },
}

impl Phase {
    /// The `status` text of Docker's progress message.
    pub fn status(&self) -> String {
        match self {
            Phase::PullingFsLayer => "Pulling fs layer".into(),
            Phase::Waiting => "Waiting".into(),
            Phase::Downloading { .. } => "Downloading".into(),
            Phase::Verifying => "Verifying Checksum".into(),
            Phase::DownloadComplete => "Download complete".into(),
            Phase::Extracting { .. } => "Extracting".into(),
            Phase::PullComplete => "Pull complete".into(),
            Phase::AlreadyExists => "Already exists".into(),
            Phase::Preparing => "Preparing".into(),
            Phase::Pushing { .. } => "Pushing".into(),
            Phase::Pushed => "Pushed".into(),
            Phase::LayerAlreadyExists => "Layer already exists".into(),
            Phase::MountedFrom { repository } => format!("Mounted from {repository}"),
        }
    }

    /// `(current, total)` for the phases that carry a progress bar.
    pub fn progress(&self) -> Option<(u64, Option<u64>)> {
        match self {
            Phase::Downloading { current, total }
            | Phase::Extracting { current, total }
            | Phase::Pushing { current, total } => Some((*current, *total)),
            _ => None,
        }
    }
}

/// One line of Docker's JSON progress stream (`jsonmessage.JSONMessage`) as the
/// library reports it; the API serialises it. Per-layer lines carry `id`, the
/// overall ones (`Pulling from …`, `Digest: …`, `Status: …`) carry none or the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub status: String,
    pub id: Option<String>,
    /// `progressDetail`: `Some` for per-layer lines (`{}` when there is no bar).
    pub progress: Option<(u64, Option<u64>)>,
    pub per_layer: bool,
    /// `aux`: the push result (`{"Tag", "Digest", "Size"}`).
    pub aux: Option<serde_json::Value>,
}

impl Message {
    /// An overall status line.
    pub fn status(status: impl Into<String>) -> Self {
        Message {
            status: status.into(),
            id: None,
            progress: None,
            per_layer: false,
            aux: None,
        }
    }

    /// A status line about one thing named by `id` (the tag in `Pulling from`).
    pub fn with_id(status: impl Into<String>, id: impl Into<String>) -> Self {
        Message {
            id: Some(id.into()),
            ..Message::status(status)
        }
    }

    /// A per-layer line of `phase` for the layer shown as `id` (12 hex characters).
    pub fn layer(id: &str, phase: &Phase) -> Self {
        Message {
            status: phase.status(),
            id: Some(id.to_string()),
            progress: phase.progress(),
            per_layer: true,
            aux: None,
        }
    }

    /// Docker's JSON shape of this line.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::Map::new();
        if !self.status.is_empty() {
            v.insert("status".into(), self.status.clone().into());
        }
        if self.per_layer || self.aux.is_some() {
            let mut detail = serde_json::Map::new();
            if let Some((current, total)) = self.progress {
                detail.insert("current".into(), current.into());
                if let Some(total) = total {
                    detail.insert("total".into(), total.into());
                }
            }
            v.insert("progressDetail".into(), detail.into());
        }
        if let Some(id) = &self.id {
            v.insert("id".into(), id.clone().into());
        }
        if let Some(aux) = &self.aux {
            v.insert("aux".into(), aux.clone());
        }
        v.into()
    }
}

/// Where pull, push and load report their lines; called from several threads.
pub type Progress<'a> = &'a (dyn Fn(Message) + Sync);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_status_texts() {
        let e = ProgressEvent::new(
            Digest::of(b"x"),
            Phase::Downloading {
                current: 1,
                total: Some(2),
            },
        );
        assert_eq!(e.id().len(), 12);
        assert_eq!(e.phase.status(), "Downloading");
        assert_eq!(e.phase.progress(), Some((1, Some(2))));
        assert_eq!(
            Phase::MountedFrom {
                repository: "library/base".into()
            }
            .status(),
            "Mounted from library/base"
        );
        assert_eq!(Phase::Verifying.status(), "Verifying Checksum");
        assert_eq!(Phase::Pushed.progress(), None);
    }
}
