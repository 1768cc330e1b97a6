//! Progress of pulls and pushes as typed events; the API renders them as
//! Docker's JSON messages (`status`, `progressDetail`, `id`).

/// Where one layer is in a pull or push, in Docker's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerState {
    PullingFsLayer,
    Waiting,
    AlreadyExists,
    Downloading {
        current: u64,
        total: u64,
    },
    /// A broken download waits this many seconds before it resumes.
    Retrying(u64),
    VerifyingChecksum,
    DownloadComplete,
    Extracting {
        current: u64,
        total: u64,
    },
    PullComplete,
    Preparing,
    Pushing {
        current: u64,
        total: u64,
    },
    Pushed,
    LayerAlreadyExists,
    MountedFrom(String),
}

impl LayerState {
    /// Docker's `status` text.
    pub fn status(&self) -> String {
        match self {
            LayerState::PullingFsLayer => "Pulling fs layer".into(),
            LayerState::Waiting => "Waiting".into(),
            LayerState::AlreadyExists => "Already exists".into(),
            LayerState::Downloading { .. } => "Downloading".into(),
            LayerState::Retrying(1) => "Retrying in 1 second".into(),
            LayerState::Retrying(n) => format!("Retrying in {n} seconds"),
            LayerState::VerifyingChecksum => "Verifying Checksum".into(),
            LayerState::DownloadComplete => "Download complete".into(),
            LayerState::Extracting { .. } => "Extracting".into(),
            LayerState::PullComplete => "Pull complete".into(),
            LayerState::Preparing => "Preparing".into(),
            LayerState::Pushing { .. } => "Pushing".into(),
            LayerState::Pushed => "Pushed".into(),
            LayerState::LayerAlreadyExists => "Layer already exists".into(),
            LayerState::MountedFrom(repo) => format!("Mounted from {repo}"),
        }
    }

    /// `(current, total)` for the states that carry a bar.
    pub fn bar(&self) -> Option<(u64, u64)> {
        match self {
            LayerState::Downloading { current, total }
            | LayerState::Extracting { current, total }
            | LayerState::Pushing { current, total } => Some((*current, *total)),
            _ => None,
        }
    }

    /// Whether Docker sends `progressDetail: {}` with this state (the
    /// per-layer states do; the bar states send their numbers).
    pub fn has_detail(&self) -> bool {
        !matches!(self, LayerState::Waiting | LayerState::Preparing)
    }
}

/// One progress message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A layer, by the short form of its blob digest (or diff ID).
    Layer { id: String, state: LayerState },
    /// A line of text, with the id Docker gives it (`Pulling from …` has
    /// the tag), or none.
    Message { id: Option<String>, text: String },
    /// The result of a push: `{"aux": {"Tag","Digest","Size"}}`.
    PushResult {
        tag: String,
        digest: String,
        size: u64,
    },
}

/// Where events go; a closed receiver means nobody listens any more.
pub type Progress = tokio::sync::mpsc::UnboundedSender<ProgressEvent>;

/// The 12-hex short form Docker shows for a digest.
pub fn short_id(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// Sends a layer state (a listener gone is not an error here).
pub fn layer(progress: &Progress, digest: &str, state: LayerState) {
    let _ = progress.send(ProgressEvent::Layer {
        id: short_id(digest),
        state,
    });
}

/// Sends a text line.
pub fn message(progress: &Progress, id: Option<&str>, text: impl Into<String>) {
    let _ = progress.send(ProgressEvent::Message {
        id: id.map(str::to_string),
        text: text.into(),
    });
}
