//! The in-memory scheduler's pending schedules: by name, and in firing order (time, then name).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap as HashMap;

use crate::engine::DueStep;

/// A pending schedule.
pub(super) struct Pending {
    pub name: Arc<str>,
    pub at: DateTime<Utc>,
    pub due: DueStep,
}

/// Pending schedules by name, and a queue of them in firing order: time, then name.
///
/// The queue is a radix heap keyed by the due second. The simulator's clock only moves
/// forward, so an entry moves down at most 64 buckets in its life, each a list written and
/// read in order, where a binary heap compared it along a path of cache misses at every pop
/// (BENCHMARKS.md, item 87). The entries of the second being fired are kept sorted by time,
/// then name. Taking or deleting a schedule frees its slot at once; its queue entry is
/// known stale by the slot's stamp and dropped when it comes up (cheaper than finding it).
pub(super) struct Schedules {
    by_name: HashMap<Arc<str>, usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// The key every bucketed entry is above: the second last refilled from the buckets.
    last: u64,
    /// Entries due in the second `last` or before it (made after their time), latest first:
    /// the next to fire is the last one.
    current: Vec<Current>,
    /// `buckets[b]`: entries whose key is above `last` and first differs from it at bit `b`.
    /// The lowest non-empty bucket holds the soonest entry.
    buckets: [Vec<Queued>; 64],
}

struct Slot {
    /// Counts the slot's reuses: a queue entry with an older stamp is stale.
    stamp: u32,
    pending: Option<Pending>,
}

/// 24 bytes: what a bucket holds for a schedule.
struct Queued {
    at: DateTime<Utc>,
    stamp: u32,
    slot: usize,
}

/// An entry of the current second, with its name to order it by.
struct Current {
    at: DateTime<Utc>,
    name: Arc<str>,
    stamp: u32,
    slot: usize,
}

/// Seconds, as an unsigned number that orders as the times do.
fn key(at: DateTime<Utc>) -> u64 {
    (at.timestamp() as u64) ^ (1 << 63)
}

impl Default for Schedules {
    fn default() -> Self {
        Self { by_name: HashMap::default(), slots: Vec::new(), free: Vec::new(), last: 0, current: Vec::new(), buckets: std::array::from_fn(|_| Vec::new()) }
    }
}

impl Schedules {
    /// Adds a schedule, unless one of that name is pending (then this is a retried create).
    pub fn add(&mut self, name: &Arc<str>, at: DateTime<Utc>, due: &DueStep) {
        let name = Arc::clone(name);
        let std::collections::hash_map::Entry::Vacant(vacant) = self.by_name.entry(name.clone()) else { return };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot { stamp: 0, pending: None });
            self.slots.len() - 1
        });
        vacant.insert(slot);
        let stamp = self.slots[slot].stamp;
        let k = key(at);
        if k <= self.last {
            let position = self.current.partition_point(|c| (c.at, &*c.name) > (at, &*name));
            self.current.insert(position, Current { at, name: name.clone(), stamp, slot });
        } else {
            self.buckets[bucket(k, self.last)].push(Queued { at, stamp, slot });
        }
        self.slots[slot].pending = Some(Pending { name, at, due: due.clone() });
    }

    /// Forgets the schedule of this name, if pending.
    pub fn remove(&mut self, name: &str) {
        if let Some(slot) = self.by_name.remove(name) {
            self.free_slot(slot);
        }
    }

    /// The soonest pending schedule.
    pub fn soonest(&mut self) -> Option<&Pending> {
        let slot = self.soonest_slot()?;
        self.slots[slot].pending.as_ref()
    }

    /// The soonest pending schedule, no longer pending.
    pub fn take_soonest(&mut self) -> Option<Pending> {
        let slot = self.soonest_slot()?;
        self.current.pop();
        let pending = self.slots[slot].pending.take()?;
        self.by_name.remove(&pending.name);
        self.free_slot(slot);
        Some(pending)
    }

    /// Every pending schedule, in no order.
    pub fn iter(&self) -> impl Iterator<Item = &Pending> {
        self.by_name.values().filter_map(|&slot| self.slots[slot].pending.as_ref())
    }

    fn free_slot(&mut self, slot: usize) {
        let freed = &mut self.slots[slot];
        freed.pending = None;
        freed.stamp = freed.stamp.wrapping_add(1);
        self.free.push(slot);
    }

    fn is_live(&self, slot: usize, stamp: u32) -> bool {
        self.slots[slot].stamp == stamp
    }

    /// The slot of the soonest pending schedule, at the end of `current`; stale entries on
    /// the way are dropped.
    fn soonest_slot(&mut self) -> Option<usize> {
        loop {
            match self.current.last() {
                Some(next) if self.is_live(next.slot, next.stamp) => return Some(next.slot),
                Some(_) => {
                    self.current.pop();
                }
                None => {
                    if !self.refill() {
                        return None;
                    }
                }
            }
        }
    }

    /// Moves the soonest second's entries from the lowest non-empty bucket into `current`,
    /// and the rest of that bucket into lower ones. False when no bucket holds a live entry.
    fn refill(&mut self) -> bool {
        while let Some(b) = self.buckets.iter().position(|bucket| !bucket.is_empty()) {
            let mut emptied = std::mem::take(&mut self.buckets[b]);
            emptied.retain(|q| self.is_live(q.slot, q.stamp));
            let Some(soonest) = emptied.iter().map(|q| key(q.at)).min() else {
                self.buckets[b] = emptied;
                continue;
            };
            // Every other bucketed key shares its bits above `b` with both the old `last` and
            // this one, so the other buckets stay as they are.
            self.last = soonest;
            for q in emptied.drain(..) {
                let k = key(q.at);
                if k == soonest {
                    let name = self.slots[q.slot].pending.as_ref().map(|p| p.name.clone()).unwrap_or_else(|| Arc::from(""));
                    self.current.push(Current { at: q.at, name, stamp: q.stamp, slot: q.slot });
                } else {
                    self.buckets[bucket(k, soonest)].push(q);
                }
            }
            // Its list kept for reuse: every entry went to a lower bucket.
            self.buckets[b] = emptied;
            self.current.sort_unstable_by(|a, b| (&b.at, &*b.name).cmp(&(&a.at, &*a.name)));
            return true;
        }
        false
    }
}

/// The bucket of a key above `last`: the highest bit where they differ.
fn bucket(k: u64, last: u64) -> usize {
    63 - (k ^ last).leading_zeros() as usize
}
