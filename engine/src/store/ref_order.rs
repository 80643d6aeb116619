//! The order of events on one ref (a branch or tag of one repository on one forge), as a pure
//! decision, so that every store applies the same rule and it is tested without a database.
//!
//! Forges do not promise to deliver pushes in order: a retried delivery, a slow hook or two
//! replicas can hand gantry an older commit after a newer one. Acting on it would promote the
//! older commit over the newer one. Each store therefore keeps, per ref, the events it accepted
//! (the newest first) and asks [`judge`] about every new one, in the transaction that records
//! it. An event is older than the newest one (the head) when:
//!
//! - its commit is known to precede the head: it is the `before` of an accepted event, or an
//!   accepted event's commit that a later one replaced;
//! - or, when neither event's position is known from that chain, its commit time is earlier.
//!
//! A push whose `before` is the head's commit is always newer: it moved the ref from the head,
//! even back to an older commit (a force push). A deletion is newer when it deleted the head's
//! commit, or when it names no commit (GitHub's `delete`) and the head is not a deletion; a push
//! after a deletion recreated the branch, unless its commit is the one that was deleted. The
//! head's commit delivered again is a [`RefOrder::Repeat`], and so is a second deletion: not
//! older, but nothing new about the ref either (intake promotes a repeated push again, as
//! asked, and ignores a repeated deletion, whose preview is being removed already).

use super::common::Columns;
use crate::error::StoreError;
use crate::model::Millis;

/// An event on a ref, as the ordering rule and the stores see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefObservation {
    /// `github` or `gitlab`.
    pub forge: String,
    /// Repository path, lowercase (forges treat it without regard to case).
    pub repo: String,
    /// Full ref, `refs/heads/<branch>` or `refs/tags/<tag>`.
    pub git_ref: String,
    /// Inbox id of the delivery that carried it.
    pub inbox_id: i64,
    /// The sender's id of that delivery, for messages.
    pub delivery: String,
    /// The commit the ref points at afterwards (`None` for a deletion).
    pub sha: Option<String>,
    /// The commit the ref pointed at before, when the forge says.
    pub before: Option<String>,
    /// Whether the ref was deleted.
    pub deleted: bool,
    /// When the commit was made (or the event happened), per the forge.
    pub event_time: Option<Millis>,
}

/// An event a store accepted earlier for the same ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRefEvent {
    /// Inbox id of its delivery.
    pub inbox_id: i64,
    /// The sender's id of its delivery.
    pub delivery: String,
    /// Its commit.
    pub sha: Option<String>,
    /// The commit before it.
    pub before: Option<String>,
    /// Whether it deleted the ref.
    pub deleted: bool,
    /// Its commit time.
    pub event_time: Option<Millis>,
}

/// Where an event stands next to the newest event of its ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefOrder {
    /// The first event of the ref, or newer than all before it: it is the ref's head now.
    Newest,
    /// The head again (the same commit pushed again, a second deletion): not older, and
    /// nothing new about the ref.
    Repeat {
        /// Why, as a lowercase fragment naming the delivery it repeats.
        reason: String,
    },
    /// Older than the head: acting on it would move environments back.
    Older {
        /// Why, as a lowercase fragment naming the newer delivery.
        reason: String,
    },
}

impl RefObservation {
    /// What gets recorded when the event is accepted.
    pub fn seen(&self) -> SeenRefEvent {
        SeenRefEvent {
            inbox_id: self.inbox_id,
            delivery: self.delivery.clone(),
            sha: self.sha.clone(),
            before: self.before.clone(),
            deleted: self.deleted,
            event_time: self.event_time,
        }
    }
}

/// An accepted event from a `ref_events` row (`inbox_id`, `delivery`, `sha`, `before_sha`,
/// `deleted`, `event_time`) of either store.
pub(crate) fn decode_seen(row: &impl Columns) -> Result<SeenRefEvent, StoreError> {
    Ok(SeenRefEvent {
        inbox_id: row.int("inbox_id")?,
        delivery: row.text("delivery")?,
        sha: row.text_opt("sha")?,
        before: row.text_opt("before_sha")?,
        deleted: row.flag("deleted")?,
        event_time: row.int_opt("event_time")?,
    })
}

/// How many accepted events a store keeps per ref; older ones only matter through the chain
/// of `before`s, which the newest few cover.
pub const REF_HISTORY: usize = 32;

/// Judges `incoming` against `history`, the events accepted for its ref, newest first. Events
/// of the incoming event's own delivery are left out, so that processing a delivery again
/// after a crash reaches the same verdict.
pub fn judge(history: &[SeenRefEvent], incoming: &RefObservation) -> RefOrder {
    let history: Vec<&SeenRefEvent> = history.iter().filter(|seen| seen.inbox_id != incoming.inbox_id).collect();
    let Some(head) = history.first() else {
        return RefOrder::Newest;
    };
    let older_than_head = |sha: &str| {
        history.iter().any(|seen| seen.before.as_deref() == Some(sha))
            || history[1..].iter().any(|seen| seen.sha.as_deref() == Some(sha) && head.sha.as_deref() != Some(sha))
    };
    let short = |sha: Option<&str>| sha.map(|s| s.chars().take(7).collect::<String>()).unwrap_or_else(|| "-".into());
    let earlier_than_head = match (incoming.event_time, head.event_time) {
        (Some(incoming_time), Some(head_time)) => incoming_time < head_time,
        _ => false,
    };

    if incoming.deleted {
        if head.deleted {
            return RefOrder::Repeat {
                reason: format!("{} was deleted already (delivery {})", incoming.git_ref, head.delivery),
            };
        }
        return match incoming.before.as_deref() {
            None => RefOrder::Newest,
            Some(before) if head.sha.as_deref() == Some(before) => RefOrder::Newest,
            Some(before) if older_than_head(before) || earlier_than_head => RefOrder::Older {
                reason: format!(
                    "the deletion of {} at {} happened before the push of {} (delivery {})",
                    incoming.git_ref,
                    short(Some(before)),
                    short(head.sha.as_deref()),
                    head.delivery
                ),
            },
            Some(_) => RefOrder::Newest,
        };
    }
    let Some(sha) = incoming.sha.as_deref() else {
        // Nothing to order by (a creation reported without its commit).
        return RefOrder::Repeat { reason: format!("the event names no commit of {}", incoming.git_ref) };
    };
    if head.deleted {
        let was_deleted = head.before.as_deref() == Some(sha) || older_than_head(sha);
        return if was_deleted {
            RefOrder::Older {
                reason: format!(
                    "{} at {} was deleted afterwards (delivery {})",
                    incoming.git_ref,
                    short(Some(sha)),
                    head.delivery
                ),
            }
        } else {
            RefOrder::Newest
        };
    }
    if head.sha.as_deref() == Some(sha) {
        return RefOrder::Repeat {
            reason: format!("{} is at {} already (delivery {})", incoming.git_ref, short(Some(sha)), head.delivery),
        };
    }
    if let Some(copy) = history[1..].iter().find(|seen| {
        !seen.deleted && seen.sha.as_deref() == Some(sha) && seen.before.as_deref() == incoming.before.as_deref()
    }) {
        return RefOrder::Older {
            reason: format!(
                "the push of {} to {} was seen before (delivery {}) and replaced since by {} (delivery {})",
                short(Some(sha)),
                incoming.git_ref,
                copy.delivery,
                short(head.sha.as_deref()),
                head.delivery
            ),
        };
    }
    if incoming.before.is_some() && incoming.before.as_deref() == head.sha.as_deref() {
        return RefOrder::Newest;
    }
    if older_than_head(sha) {
        return RefOrder::Older {
            reason: format!(
                "{} at {} is older than {}, which delivery {} brought",
                incoming.git_ref,
                short(Some(sha)),
                short(head.sha.as_deref()),
                head.delivery
            ),
        };
    }
    if earlier_than_head {
        return RefOrder::Older {
            reason: format!(
                "{} at {} was committed before {}, which delivery {} brought",
                incoming.git_ref,
                short(Some(sha)),
                short(head.sha.as_deref()),
                head.delivery
            ),
        };
    }
    RefOrder::Newest
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
    const D: &str = "dddddddddddddddddddddddddddddddddddddddd";

    fn push(inbox_id: i64, before: Option<&str>, sha: &str, time: Option<Millis>) -> RefObservation {
        RefObservation {
            forge: "github".into(),
            repo: "acme/shop".into(),
            git_ref: "refs/heads/main".into(),
            inbox_id,
            delivery: format!("d{inbox_id}"),
            sha: Some(sha.into()),
            before: before.map(str::to_string),
            deleted: false,
            event_time: time,
        }
    }

    fn deletion(inbox_id: i64, before: Option<&str>) -> RefObservation {
        RefObservation { sha: None, before: before.map(str::to_string), deleted: true, ..push(inbox_id, None, A, None) }
    }

    /// Feeds events in arrival order, recording the accepted ones as a store does; returns
    /// each verdict.
    fn arrive(events: &[RefObservation]) -> Vec<RefOrder> {
        let mut history: Vec<SeenRefEvent> = Vec::new();
        events
            .iter()
            .map(|event| {
                let verdict = judge(&history, event);
                if verdict == RefOrder::Newest {
                    history.insert(0, event.seen());
                }
                verdict
            })
            .collect()
    }

    fn is_older(verdict: &RefOrder) -> bool {
        matches!(verdict, RefOrder::Older { .. })
    }

    #[test]
    fn pushes_in_order_are_each_newest() {
        let verdicts = arrive(&[push(1, None, A, None), push(2, Some(A), B, None), push(3, Some(B), C, None)]);
        assert_eq!(verdicts, [RefOrder::Newest, RefOrder::Newest, RefOrder::Newest]);
    }

    #[test]
    fn an_older_push_arriving_late_is_older_by_the_chain() {
        let verdicts = arrive(&[push(2, Some(A), B, None), push(1, None, A, None)]);
        assert_eq!(verdicts[0], RefOrder::Newest);
        let RefOrder::Older { reason } = &verdicts[1] else { panic!("{verdicts:?}") };
        assert!(reason.contains("older than bbbbbbb, which delivery d2 brought"), "{reason}");
        // Two steps back, known only through the recorded `before`s.
        let verdicts = arrive(&[push(1, None, A, None), push(3, Some(B), C, None), push(2, Some(A), B, None)]);
        assert_eq!(verdicts[1], RefOrder::Newest, "a gap in the chain is no reason to refuse");
        assert!(is_older(&verdicts[2]), "{verdicts:?}");
    }

    #[test]
    fn without_a_chain_commit_times_decide() {
        let verdicts = arrive(&[push(2, Some(C), D, Some(2_000)), push(1, Some(A), B, Some(1_000))]);
        let RefOrder::Older { reason } = &verdicts[1] else { panic!("{verdicts:?}") };
        assert!(reason.contains("committed before"), "{reason}");
        let verdicts = arrive(&[push(1, Some(A), B, Some(1_000)), push(2, Some(C), D, Some(2_000))]);
        assert_eq!(verdicts[1], RefOrder::Newest);
        // No times: arrival order stands.
        let verdicts = arrive(&[push(2, Some(C), D, None), push(1, Some(A), B, None)]);
        assert_eq!(verdicts[1], RefOrder::Newest);
    }

    #[test]
    fn a_force_push_back_to_an_older_commit_is_newest() {
        let verdicts = arrive(&[push(1, None, A, Some(1)), push(2, Some(A), B, Some(2)), push(3, Some(B), A, Some(1))]);
        assert_eq!(verdicts[2], RefOrder::Newest, "it moved the ref from the head");
        // The replaced push delivered again afterwards (another hook) is a copy of an old one.
        let mut late = push(4, Some(A), B, Some(2));
        late.delivery = "d4".into();
        let mut history = Vec::new();
        for event in [push(1, None, A, Some(1)), push(2, Some(A), B, Some(2)), push(3, Some(B), A, Some(1))] {
            history.insert(0, event.seen());
        }
        let RefOrder::Older { reason } = judge(&history, &late) else { panic!() };
        assert!(reason.contains("was seen before (delivery d2)"), "{reason}");
    }

    #[test]
    fn the_head_delivered_again_is_a_repeat() {
        let verdicts = arrive(&[push(1, Some(A), B, None), push(2, Some(A), B, None)]);
        assert!(matches!(&verdicts[1], RefOrder::Repeat { reason } if reason.contains("already (delivery d1)")));
    }

    #[test]
    fn processing_a_delivery_again_reaches_the_same_verdict() {
        let mut history = Vec::new();
        let first = push(1, Some(A), B, None);
        assert_eq!(judge(&history, &first), RefOrder::Newest);
        history.insert(0, first.seen());
        assert_eq!(judge(&history, &first), RefOrder::Newest, "its own record does not count");
    }

    #[test]
    fn deletions_order_with_pushes() {
        // Deleting the head.
        let verdicts = arrive(&[push(1, None, A, None), deletion(2, Some(A)), deletion(3, None)]);
        assert_eq!(verdicts[1], RefOrder::Newest);
        assert!(matches!(&verdicts[2], RefOrder::Repeat { reason } if reason.contains("deleted already")));
        // A push of the deleted commit arriving after the deletion is older.
        let verdicts = arrive(&[deletion(2, Some(B)), push(1, Some(A), B, None)]);
        assert!(is_older(&verdicts[1]), "{verdicts:?}");
        // Creating the branch again after the deletion is newest.
        let verdicts = arrive(&[push(1, None, A, None), deletion(2, Some(A)), push(3, None, C, None)]);
        assert_eq!(verdicts[2], RefOrder::Newest);
        // A deletion of a commit the branch has moved on from happened before that move.
        let verdicts = arrive(&[push(1, None, A, None), push(3, Some(A), B, None), deletion(2, Some(A))]);
        assert!(is_older(&verdicts[2]), "{verdicts:?}");
        // A deletion naming no commit follows whatever is there.
        let verdicts = arrive(&[push(1, None, A, None), deletion(2, None)]);
        assert_eq!(verdicts[1], RefOrder::Newest);
    }
}
