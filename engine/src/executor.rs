//! The executor: claims ready steps, runs them, records their outcomes.
//!
//! Every attempt is recorded as `running` (with a lease) before the step's side effect starts,
//! and its outcome after it ends. A process that dies in between leaves a `running` row that
//! the next start — or, sharing PostgreSQL, another replica once the lease has expired — hands
//! out again ([`Store::recover`]); the steps themselves are idempotent
//! (deterministic branch names and commits, tag-digest checks, one change request per
//! branch), so the re-run finishes the work without duplicating it.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;

use crate::capabilities::Capabilities;
use crate::error::StoreError;
use crate::model::now_millis;
use crate::steps::{StepContext, StepError, StepOutcome, StepRegistry};
use crate::store::{ClaimedStep, StepRecord, Store};

/// Tuning of the executor.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Steps run at the same time.
    pub workers: usize,
    /// How long a claimed step belongs to this executor before another may take it.
    pub lease: Duration,
    /// Longest sleep when there is nothing to do.
    pub idle_poll: Duration,
    /// Longest a single step attempt may take.
    pub step_timeout: Duration,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            workers: 4,
            lease: Duration::from_secs(300),
            idle_poll: Duration::from_millis(500),
            step_timeout: Duration::from_secs(600),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Run the step again after this delay.
    RetryIn(Duration),
    /// Give up; the run fails.
    Fail,
}

/// Most attempts a step gets for transient errors.
pub const MAX_ATTEMPTS: u32 = 6;

/// A step's retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// Attempts in all.
    pub max_attempts: u32,
    /// First delay, doubled per attempt.
    pub backoff: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self { max_attempts: MAX_ATTEMPTS, backoff: Duration::from_millis(500) }
    }
}

/// The one retry policy: terminal errors fail at once; transient ones back off exponentially
/// from the step's `backoff` (default 0.5 s, 1 s, 2 s, … capped at 60 s) with ±20 % jitter,
/// honouring a server's Retry-After, until the step's attempts (default [`MAX_ATTEMPTS`]) are used.
pub fn retry_policy(settings: RetrySettings, error: &StepError, attempt: u32) -> RetryDecision {
    match error {
        StepError::Terminal { .. } => RetryDecision::Fail,
        StepError::Transient { .. } if attempt >= settings.max_attempts => RetryDecision::Fail,
        StepError::Transient { retry_after, .. } => {
            let base = settings.backoff.saturating_mul(1 << attempt.saturating_sub(1).min(10));
            let base = base.min(Duration::from_secs(60));
            let jitter = rand::rng().random_range(0.8..1.2);
            let delay = base.mul_f64(jitter);
            RetryDecision::RetryIn(retry_after.map_or(delay, |after| after.max(delay)))
        }
    }
}

/// Runs steps from a store until the process ends.
pub struct Executor {
    store: Arc<dyn Store>,
    steps: StepRegistry,
    capabilities: Arc<Capabilities>,
    owner: String,
    wake: Arc<Notify>,
    options: ExecutorOptions,
}

impl Executor {
    /// An executor with a fresh owner id (leases of earlier processes are not its own). The id
    /// names the process (`executor-<pid>-<uuid>`), so that an operator can tell which replica
    /// holds a step's lease.
    pub fn new(
        store: Arc<dyn Store>,
        steps: StepRegistry,
        capabilities: Arc<Capabilities>,
        wake: Arc<Notify>,
        options: ExecutorOptions,
    ) -> Self {
        let owner = format!("executor-{}-{}", std::process::id(), uuid::Uuid::now_v7());
        Self { store, steps, capabilities, owner, wake, options }
    }

    /// Recovers steps a crashed process left running, then runs the workers forever.
    pub async fn run(self: Arc<Self>) -> Result<(), StoreError> {
        tracing::info!(owner = %self.owner, lease_ms = self.options.lease.as_millis() as u64, "executor started");
        let recovered = self.store.recover(&self.owner, now_millis()).await?;
        if recovered > 0 {
            tracing::info!(recovered, "resuming steps left running by an earlier process");
        }
        let mut workers = tokio::task::JoinSet::new();
        let admitter = self.clone();
        workers.spawn(async move { admitter.admit_forever().await });
        let heart = self.clone();
        workers.spawn(async move { heart.heartbeat_forever().await });
        for _ in 0..self.options.workers.max(1) {
            let executor = self.clone();
            workers.spawn(async move { executor.work().await });
        }
        while let Some(result) = workers.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "executor worker stopped");
            }
        }
        Ok(())
    }

    async fn admit_forever(&self) {
        loop {
            let notified = self.wake.notified();
            match self.store.admit(now_millis()).await {
                Ok(admission) => {
                    for run in &admission.superseded {
                        tracing::info!(run, "run superseded by a newer artifact");
                    }
                    if !admission.admitted.is_empty() {
                        self.wake.notify_waiters();
                    }
                }
                Err(error) => tracing::warn!(error = %crate::steps::chain(&error), "admission failed; will retry"),
            }
            let _ = tokio::time::timeout(self.options.idle_poll, notified).await;
        }
    }

    /// Renews this executor's leases, so that only a dead executor's steps are taken over.
    async fn heartbeat_forever(&self) {
        let every = (self.options.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            let until = now_millis() + self.options.lease.as_millis() as i64;
            if let Err(error) = self.store.heartbeat(&self.owner, until).await {
                tracing::warn!(error = %crate::steps::chain(&error), "lease heartbeat failed");
            }
            // Steps of executors that stopped renewing are handed out again.
            if let Err(error) = self.store.recover(&self.owner, now_millis()).await {
                tracing::warn!(error = %crate::steps::chain(&error), "lease recovery failed");
            }
        }
    }

    async fn work(&self) {
        loop {
            match self.run_once().await {
                Ok(true) => continue,
                Ok(false) => self.idle().await,
                Err(error) => {
                    tracing::warn!(error = %crate::steps::chain(&error), "executor store error; backing off");
                    tokio::time::sleep(self.options.idle_poll).await;
                }
            }
        }
    }

    async fn idle(&self) {
        let notified = self.wake.notified();
        let now = now_millis();
        let until_next = match self.store.next_wakeup().await {
            Ok(Some(at)) => Duration::from_millis((at - now).max(5) as u64),
            _ => self.options.idle_poll,
        };
        let _ = tokio::time::timeout(until_next.min(self.options.idle_poll), notified).await;
    }

    /// Claims and runs a step, and the steps claimed with each outcome's record after it,
    /// until none is ready; false when none was ready at first.
    pub async fn run_once(&self) -> Result<bool, StoreError> {
        let now = now_millis();
        let lease_until = now + self.options.lease.as_millis() as i64;
        let Some(mut claimed) = self.store.claim_step(&self.owner, now, lease_until).await? else {
            return Ok(false);
        };
        loop {
            let (run_id, name) = (claimed.run_id.clone(), claimed.name.clone());
            let record = self.attempt(claimed).await;
            // A store hiccup (a replica's connection to PostgreSQL dropping) must not strand the
            // attempt: its lease is renewed as long as this process lives. Recording is
            // idempotent (only a running step takes a record), so a retry after a failure that
            // came after the commit records nothing twice.
            let mut delay = Duration::from_millis(100);
            let next = loop {
                let now = now_millis();
                let lease_until = now + self.options.lease.as_millis() as i64;
                match self.store.finish_and_claim(&self.owner, &run_id, &name, record.clone(), now, lease_until).await {
                    Ok(next) => break next,
                    Err(error) if delay <= Duration::from_secs(5) => {
                        tracing::warn!(error = %crate::steps::chain(&error), run = %run_id, step = %name,
                            "recording the step's outcome failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Err(error) => return Err(error),
                }
            };
            crate::failpoint::hit(&format!("after-finish:{name}"));
            self.wake.notify_waiters();
            match next {
                Some(step) => claimed = step,
                None => return Ok(true),
            }
        }
    }

    async fn attempt(&self, claimed: ClaimedStep) -> StepRecord {
        let Some(step) = self.steps.get(&claimed.kind).cloned() else {
            return StepRecord::Failed { error: format!("unknown step kind {}", claimed.kind) };
        };
        let attempt = claimed.attempt;
        let retry = RetrySettings {
            max_attempts: claimed.max_attempts.unwrap_or(MAX_ATTEMPTS).max(1),
            backoff: claimed.backoff_ms.map_or(RetrySettings::default().backoff, Duration::from_millis),
        };
        let timeout = claimed.timeout_ms.map_or(self.options.step_timeout, Duration::from_millis);
        let ctx = StepContext {
            run_id: claimed.run_id,
            step: claimed.name,
            attempt,
            config: claimed.config,
            plan: claimed.plan,
            digest: claimed.digest,
            run_created_at: claimed.run_created_at,
            outputs: claimed.outputs,
            progress: claimed.progress,
            started_at: claimed.started_at,
            capabilities: self.capabilities.clone(),
        };
        tracing::info!(run = %ctx.run_id, step = %ctx.step, attempt, "step started");
        // A separate task, so that a panicking step fails its run instead of the executor.
        let task = tokio::spawn(async move {
            let ctx = ctx;
            tokio::time::timeout(timeout, step.run(&ctx)).await
        });
        let result = match task.await {
            Ok(Ok(result)) => result,
            Ok(Err(_elapsed)) => Err(StepError::transient(format!("step timed out after {}s", timeout.as_secs()))),
            Err(join) => Err(StepError::terminal(format!("step panicked: {join}"))),
        };
        match result {
            Ok(StepOutcome::Succeeded { outputs, pin_digest }) => StepRecord::Succeeded { outputs, pin_digest },
            Ok(StepOutcome::Waiting { retry_in, wake_on, reason, progress }) => StepRecord::Waiting {
                until: now_millis().saturating_add(retry_in.as_millis().min(i64::MAX as u128) as i64),
                wake_on,
                outputs: progress,
                reason,
            },
            Err(error) => match retry_policy(retry, &error, attempt) {
                RetryDecision::RetryIn(delay) => {
                    tracing::warn!(%error, attempt, delay_ms = delay.as_millis() as u64, "step failed; retrying");
                    StepRecord::Retry { at: now_millis() + delay.as_millis() as i64, error: error.to_string() }
                }
                RetryDecision::Fail => {
                    tracing::warn!(%error, attempt, "step failed");
                    StepRecord::Failed { error: error.to_string() }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_errors_fail_at_once() {
        assert_eq!(retry_policy(RetrySettings::default(), &StepError::terminal("denied"), 1), RetryDecision::Fail);
    }

    #[test]
    fn transient_errors_back_off_then_fail() {
        let error = StepError::transient("503");
        let RetryDecision::RetryIn(first) = retry_policy(RetrySettings::default(), &error, 1) else {
            panic!("should retry")
        };
        let RetryDecision::RetryIn(third) = retry_policy(RetrySettings::default(), &error, 3) else {
            panic!("should retry")
        };
        assert!(first >= Duration::from_millis(400) && first <= Duration::from_millis(600), "{first:?}");
        assert!(third >= Duration::from_millis(1600) && third <= Duration::from_millis(2400), "{third:?}");
        assert_eq!(retry_policy(RetrySettings::default(), &error, MAX_ATTEMPTS), RetryDecision::Fail);
        let custom = RetrySettings { max_attempts: 2, backoff: Duration::from_secs(10) };
        let RetryDecision::RetryIn(delay) = retry_policy(custom, &error, 1) else { panic!("should retry") };
        assert!(delay >= Duration::from_secs(8), "{delay:?}");
        assert_eq!(retry_policy(custom, &error, 2), RetryDecision::Fail);
    }

    #[test]
    fn retry_after_is_honoured() {
        let error = StepError::Transient { message: "429".into(), retry_after: Some(Duration::from_secs(30)) };
        assert_eq!(retry_policy(RetrySettings::default(), &error, 1), RetryDecision::RetryIn(Duration::from_secs(30)));
    }
}
