//! Fair eviction: over a room cap, the sender using the most of the room is cut first, so a
//! flood by a few accounts never pushes out a long-standing participant with a small event.
use std::collections::{BTreeMap, BTreeSet};

use matrix_sticky_events::{Change, Limits, RemovalReason, StickyEvent, StickyMap, Usage};
use proptest::prelude::*;
use ruma_common::{OwnedUserId, UserId};
use serde_json::json;

use crate::support::{Clock, HOUR, ids_of, replay, room_a, set, sticky, view_of};

const REAL: &str = "@real:example.org";
const HOSTILE: [&str; 3] = ["@h1:example.org", "@h2:example.org", "@h3:example.org"];

/// A keyed event of `sender`, sent `ots_offset` ms from the clock's origin, sticky for one hour,
/// with a `pad` of `pad` bytes.
fn padded(clock: &Clock, id: &str, sender: &str, ots_offset: i64, pad: usize) -> StickyEvent {
    let mut event = crate::support::event_json(id, sender, Some(id), ots_offset);
    set(&mut event, "/content/pad", json!("x".repeat(pad)));
    set(
        &mut event,
        "/unsigned",
        json!({ "msc4354_sticky_duration_ttl_ms": HOUR }),
    );
    sticky(&event, clock.receipt(0))
}

fn user(id: &str) -> OwnedUserId {
    UserId::parse(id).expect("user id")
}

/// The order in which senders are cut under the bytes cap (`by_bytes`) or the count cap.
fn order(usage: Usage, sender: &str, by_bytes: bool) -> (usize, usize, String) {
    if by_bytes {
        (usage.bytes, usage.candidates, sender.to_owned())
    } else {
        (usage.candidates, usage.bytes, sender.to_owned())
    }
}

/// Flood a room holding one small, old event of a real participant with large events of three
/// hostile senders, `flood` each, in `sequence` (sender by sender) or interleaved. After every
/// insert: the real entry is still visible, and any eviction hit the heaviest sender.
fn flood(limits: Limits, by_bytes: bool, flood: usize, pad: usize, sequence: bool) {
    let clock = Clock::new();
    let now = clock.at(0);
    let mut map = StickyMap::new(limits);
    let mut view = BTreeMap::new();
    // The oldest entry of the room: under the old policy, the first to go.
    let real = padded(&clock, "real", REAL, -3_000_000, 0);
    replay(&mut view, &map.handle_event(real, now));
    let mut sends: Vec<(usize, usize)> = (0..flood)
        .flat_map(|n| (0..HOSTILE.len()).map(move |h| (h, n)))
        .collect();
    if sequence {
        sends.sort_unstable();
    }
    let mut evictions = 0;
    for (step, (h, n)) in sends.into_iter().enumerate() {
        let sender = HOSTILE[h];
        let event = padded(
            &clock,
            &format!("h{h}e{n:04}"),
            sender,
            -2_000_000 + i64::try_from(step).expect("small"),
            pad,
        );
        let weight = Limits::weight(&event);
        // Usage of every sender once the event is in, before any eviction.
        let mut usage: BTreeMap<&str, Usage> = [REAL]
            .into_iter()
            .chain(HOSTILE)
            .map(|s| (s, map.sender_usage(&room_a(), &user(s))))
            .filter(|(_, u)| u.candidates > 0)
            .collect();
        let mine = usage.entry(sender).or_default();
        mine.candidates += 1;
        mine.bytes += weight;
        let heaviest = usage
            .iter()
            .map(|(s, u)| order(*u, s, by_bytes))
            .max()
            .expect("senders")
            .2;

        let changes = map.handle_event(event, now);
        replay(&mut view, &changes);
        let evicted: Vec<_> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Removed {
                    old,
                    reason: RemovalReason::Evicted,
                } => Some(old.meta.sender.to_string()),
                _ => None,
            })
            .collect();
        assert!(
            evicted.len() <= 1,
            "equal events: at most one eviction each"
        );
        if let Some(victim) = evicted.first() {
            evictions += 1;
            assert_eq!(victim, &heaviest, "step {step}: the heaviest sender is cut");
        }
        assert!(
            map.lookup(&room_a(), &user(REAL), "org.example.sticky", "real")
                .is_some(),
            "step {step}: the real participant was evicted"
        );
        let room = map.room_usage(&room_a());
        assert!(room.candidates <= limits.per_room && room.bytes <= limits.per_room_bytes);
    }
    assert!(evictions > flood, "the flood went well past the cap");
    assert_eq!(ids_of(&view), view_of(&map));
    // The hostile senders end up sharing the room, within one event of each other.
    let kept: Vec<usize> = HOSTILE
        .iter()
        .map(|s| map.sender_usage(&room_a(), &user(s)).candidates)
        .collect();
    let (least, most) = (
        kept.iter().min().expect("three"),
        kept.iter().max().expect("three"),
    );
    assert!(most - least <= 1, "unfair split {kept:?}");
}

#[test]
fn a_flood_over_the_byte_cap_cuts_the_heaviest_sender_not_the_oldest_entry() {
    let limits = Limits {
        per_sender: 1_000,
        per_room: 1_000,
        per_room_bytes: 40_000,
        ..Limits::default()
    };
    flood(limits, true, 200, 2_000, true);
    flood(limits, true, 200, 2_000, false);
}

#[test]
fn a_flood_over_the_count_cap_cuts_the_sender_with_the_most_candidates() {
    let limits = Limits {
        per_sender: 1_000,
        per_room: 30,
        ..Limits::default()
    };
    flood(limits, false, 60, 100, true);
    flood(limits, false, 60, 100, false);
}

/// A naive model of one room under the caps: every candidate in a list, every choice a scan.
#[derive(Debug)]
struct Model {
    limits: Limits,
    /// `(rank, event ID, sender, weight)`.
    candidates: Vec<(u64, String, String, usize)>,
}

impl Model {
    fn usage(&self, sender: &str) -> Usage {
        let mut usage = Usage::default();
        for (_, _, s, weight) in &self.candidates {
            if s == sender {
                usage.candidates += 1;
                usage.bytes += weight;
            }
        }
        usage
    }

    fn senders(&self) -> BTreeSet<String> {
        self.candidates.iter().map(|c| c.2.clone()).collect()
    }

    /// The position of the lowest-ranked candidate of `sender`.
    fn lowest(&self, sender: &str) -> Option<usize> {
        (0..self.candidates.len())
            .filter(|&i| self.candidates[i].2 == sender)
            .min_by(|&a, &b| {
                let (a, b) = (&self.candidates[a], &self.candidates[b]);
                (a.0, a.1.as_bytes()).cmp(&(b.0, b.1.as_bytes()))
            })
    }

    /// The next candidate to evict after `inserting` sent one, with the cap it is cut for
    /// (`None` for the per-sender cap).
    fn victim(&self, inserting: &str) -> Option<(usize, Option<bool>)> {
        let total = Usage {
            candidates: self.candidates.len(),
            bytes: self.candidates.iter().map(|c| c.3).sum(),
        };
        let by_bytes = if self.usage(inserting).candidates > self.limits.per_sender {
            return self.lowest(inserting).map(|at| (at, None));
        } else if total.candidates > self.limits.per_room {
            false
        } else if total.bytes > self.limits.per_room_bytes {
            true
        } else {
            return None;
        };
        let heaviest = self
            .senders()
            .into_iter()
            .max_by_key(|s| order(self.usage(s), s, by_bytes))?;
        self.lowest(&heaviest).map(|at| (at, Some(by_bytes)))
    }

    fn insert(&mut self, event: &StickyEvent) -> Result<(), TestCaseError> {
        let weight = Limits::weight(event);
        if weight > self.limits.per_room_bytes {
            return Ok(());
        }
        let sender = event.meta.sender.to_string();
        self.candidates.push((
            event.meta.rank(),
            event.meta.event_id.to_string(),
            sender.clone(),
            weight,
        ));
        let new = self.candidates.len() - 1;
        if self.victim(&sender).is_some_and(|(at, _)| at == new) {
            self.candidates.pop();
            return Ok(());
        }
        while let Some((at, cap)) = self.victim(&sender) {
            let cut = &self.candidates[at].2;
            let usage = self.usage(cut);
            let senders = self.senders().len();
            match cap {
                None => prop_assert!(usage.candidates > self.limits.per_sender),
                // Never a sender within its fair share of the cap in question.
                Some(false) => prop_assert!(
                    usage.candidates * senders > self.limits.per_room,
                    "cut {cut} with {usage:?} of {senders} senders under the count cap"
                ),
                Some(true) => prop_assert!(
                    usage.bytes * senders > self.limits.per_room_bytes,
                    "cut {cut} with {usage:?} of {senders} senders under the byte cap"
                ),
            }
            self.candidates.swap_remove(at);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random senders, sizes and ranks under small caps: after every insert the map holds
    /// exactly the model's candidates, no eviction ever hit a sender within its fair share, and
    /// the room and sender counters equal the sums over the candidates.
    #[test]
    fn fair_eviction_matches_the_model(
        sends in prop::collection::vec((0..5u8, 0..3_000usize, 0..10_000i64, prop::bool::weighted(0.8)), 1..120),
        per_sender in 1..8usize,
        per_room in 2..12usize,
        per_room_bytes in 1_500..8_000usize,
    ) {
        let clock = Clock::new();
        let now = clock.at(0);
        let limits = Limits { per_sender, per_room, per_room_bytes, ..Limits::default() };
        let mut map = StickyMap::new(limits);
        let mut model = Model { limits, candidates: Vec::new() };
        let mut view = BTreeMap::new();
        for (n, (sender, pad, ots, keyed)) in sends.into_iter().enumerate() {
            let sender = format!("@s{sender}:example.org");
            let mut event = padded(&clock, &format!("e{n:04}"), &sender, -ots, pad);
            // Three keys per sender (so some candidates are superseded), and unkeyed events.
            event.sticky_key = keyed.then(|| format!("k{}", n % 3));
            model.insert(&event)?;
            replay(&mut view, &map.handle_event(event, now));
            prop_assert_eq!(ids_of(&view), view_of(&map));

            let held: BTreeSet<String> = map.candidates().map(|e| e.meta.event_id.to_string()).collect();
            let modelled: BTreeSet<String> = model.candidates.iter().map(|c| c.1.clone()).collect();
            prop_assert_eq!(&held, &modelled);
            let mut room = Usage::default();
            let mut senders: BTreeMap<String, Usage> = BTreeMap::new();
            for event in map.candidates() {
                let weight = Limits::weight(event);
                room.candidates += 1;
                room.bytes += weight;
                let usage = senders.entry(event.meta.sender.to_string()).or_default();
                usage.candidates += 1;
                usage.bytes += weight;
            }
            prop_assert_eq!(map.room_usage(&room_a()), room);
            for s in 0..5 {
                let sender = format!("@s{s}:example.org");
                prop_assert_eq!(
                    map.sender_usage(&room_a(), &user(&sender)),
                    senders.get(&sender).copied().unwrap_or_default()
                );
            }
            prop_assert!(room.candidates <= per_room && room.bytes <= per_room_bytes);
        }
    }
}
