//! The domain model: runs, their steps, and the states they move through.

use gantry_workflows::Plan;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch; the store's unit of time.
pub type Millis = i64;

/// Now, in [`Millis`].
pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// State of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Created; no step has started.
    Pending,
    /// At least one step is running or ready to run.
    Running,
    /// Every unfinished step waits for an event or a time.
    Waiting,
    /// Every step succeeded.
    Succeeded,
    /// A step failed for good.
    Failed,
    /// Stopped by an operator.
    Cancelled,
}

/// State of one step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    /// Waits for the steps it needs.
    Pending,
    /// May run once `not_before` has passed.
    Ready,
    /// Claimed by an executor.
    Running,
    /// Parked until an event or `not_before`.
    Waiting,
    /// Done, with outputs.
    Succeeded,
    /// Failed for good.
    Failed,
    /// Not run, on purpose.
    Skipped,
    /// Not run because the run ended first.
    Cancelled,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            /// The state's name as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }

            /// Parses a stored name.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(RunState {
    Pending => "pending", Running => "running", Waiting => "waiting",
    Succeeded => "succeeded", Failed => "failed", Cancelled => "cancelled",
});

text_enum!(StepState {
    Pending => "pending", Ready => "ready", Running => "running", Waiting => "waiting",
    Succeeded => "succeeded", Failed => "failed", Skipped => "skipped", Cancelled => "cancelled",
});

impl RunState {
    /// Whether the run can no longer change.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A run as stored, with its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Run id (a UUIDv7, so ids sort by creation time).
    pub id: String,
    /// App promoted.
    pub app: String,
    /// Environment promoted into.
    pub environment: String,
    /// Pipeline run.
    pub pipeline: String,
    /// Current state.
    pub state: RunState,
    /// Artifact digest, once resolved and pinned.
    pub digest: Option<String>,
    /// Everything the run needs, fixed when it was created.
    pub plan: Plan,
    /// Why the run failed, if it did.
    pub error: Option<String>,
    /// Why the run exists: `promotion`, `follow-up`, `rollback` or `manual`.
    pub origin: String,
    /// Whether the concurrency rules let it execute yet.
    pub admitted: bool,
    /// Creation time.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
    /// When it reached a final state.
    pub finished_at: Option<Millis>,
    /// Steps in plan order.
    pub steps: Vec<StepRun>,
}

/// One step of a run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRun {
    /// Step name.
    pub name: String,
    /// Step kind.
    pub kind: String,
    /// Names of the steps it needs.
    pub needs: Vec<String>,
    /// The step's settings.
    pub config: serde_json::Value,
    /// Current state.
    pub state: StepState,
    /// How many times it was started.
    pub attempts: u32,
    /// Earliest time it may run (again).
    pub not_before: Millis,
    /// Outputs once succeeded (or progress while waiting).
    pub outputs: Option<serde_json::Value>,
    /// Last error, if any.
    pub error: Option<String>,
    /// Why an operator skipped it, or why it did not run.
    pub note: Option<String>,
    /// First start.
    pub started_at: Option<Millis>,
    /// Final state reached.
    pub finished_at: Option<Millis>,
}

/// A change request opened through a forge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequest {
    /// Store id (the local forge's change request number).
    pub id: i64,
    /// Forge name.
    pub forge: String,
    /// Repository URL.
    pub repo: String,
    /// Head branch.
    pub branch: String,
    /// Base branch.
    pub base: String,
    /// Head commit.
    pub head_commit: String,
    /// Title.
    pub title: String,
    /// Body (Markdown).
    pub body: String,
    /// Run that opened it.
    pub run_id: String,
    /// `open`, `merged` or `closed`.
    pub state: String,
    /// Creation time.
    pub created_at: Millis,
}

/// A webhook delivery kept in the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Store id.
    pub id: i64,
    /// Source (`github`, `gitlab`).
    pub source: String,
    /// The sender's delivery id.
    pub delivery_id: String,
    /// Event type header.
    pub event_type: String,
    /// Raw body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub received_at: Millis,
}
