//! Windows on keyed streams: tumbling, sliding and session windows in event time or processing
//! time, with allowed lateness and a side output for late records.
//!
//! Event time is the values' timestamps; the watermark is the application's upstream min clock
//! (every value older has arrived). A window `[start, end)` fires once the watermark reaches its
//! end: its result is emitted stamped `end - 1`. Its state is kept until the watermark passes
//! `end + allowed lateness`: a record for it arriving in between (late, below the watermark)
//! updates it and fires it again at once (a late firing, with the updated result). A record whose
//! windows are all gone is late beyond the lateness: it goes to the late side output, if one was
//! asked for, and is otherwise dropped. Then the window's state is evicted.
//!
//! Window state is checkpointed as keyed state is ([`KeyedState`]): per key, copy on write for
//! the checkpoint time. After a recovery from time T, windows ending at or before T count as
//! fired (their results, stamped before T, were committed with the checkpoint at T).
//!
//! Processing-time windows take the wall-clock time at which a value arrives, and fire on a
//! timer when the wall clock reaches their end; their results are stamped no lower than what
//! went into them, so a recovery replays them consistently.

use crate::chain::{Collector, Control, Cx, Operator};
use crate::state::KeyedState;
use crate::{Data, Key};
use gearpump_api::{TaskResult, TimerId};
use gearpump_core::Timestamp;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A window of time: from `start` (inclusive) to `end` (exclusive), in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    /// The first millisecond in the window.
    pub start: Timestamp,
    /// The first millisecond after it.
    pub end: Timestamp,
}

/// The result of a window for one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Windowed<K, V> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: TimeWindow,
    /// The window's result for the key.
    pub value: V,
}

/// Which windows a value belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Back-to-back windows of `size` ms.
    Tumbling { size: i64 },
    /// Windows of `size` ms starting every `slide` ms.
    Sliding { size: i64, slide: i64 },
    /// Per key, values less than `gap` ms apart are in one window.
    Session { gap: i64 },
}

/// A kind of window, for [`crate::KeyedStream::window`]: tumbling, sliding or session, in
/// event time (the default) or processing time.
///
/// ```
/// use gearpump_dsl::Window;
/// use std::time::Duration;
/// let minutes = Window::tumbling(Duration::from_secs(60));
/// let moving = Window::sliding(Duration::from_secs(60), Duration::from_secs(10));
/// let visits = Window::session(Duration::from_secs(30 * 60));
/// let wall_clock = Window::tumbling(Duration::from_secs(1)).processing_time();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub(crate) shape: Shape,
    pub(crate) processing_time: bool,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Window {
    /// Back-to-back windows of `size`: `[0, size)`, `[size, 2 size)`, …
    pub fn tumbling(size: Duration) -> Window {
        Window { shape: Shape::Tumbling { size: millis(size) }, processing_time: false }
    }

    /// Windows of `size` starting every `slide` (`slide` at most `size`): each value is in
    /// `size / slide` windows.
    pub fn sliding(size: Duration, slide: Duration) -> Window {
        Window { shape: Shape::Sliding { size: millis(size), slide: millis(slide) }, processing_time: false }
    }

    /// Per key, a window of activity: values less than `gap` apart are in the same window,
    /// which ends `gap` after its last value.
    pub fn session(gap: Duration) -> Window {
        Window { shape: Shape::Session { gap: millis(gap) }, processing_time: false }
    }

    /// The same windows in processing time: a value belongs to the windows of the wall-clock
    /// time at which it arrives, and windows fire when the wall clock reaches their end.
    #[must_use]
    pub fn processing_time(mut self) -> Window {
        self.processing_time = true;
        self
    }

    /// Why the window is invalid, if it is.
    pub(crate) fn problem(&self) -> Option<String> {
        match self.shape {
            Shape::Tumbling { size } if size <= 0 => Some("a tumbling window's size must be at least 1 ms".into()),
            Shape::Sliding { size, slide } if size <= 0 || slide <= 0 => {
                Some(format!("a sliding window's size and slide must be at least 1 ms, not {size} and {slide} ms"))
            }
            Shape::Sliding { size, slide } if slide > size => {
                Some(format!("a sliding window's slide ({slide} ms) must not exceed its size ({size} ms)"))
            }
            Shape::Session { gap } if gap <= 0 => Some("a session window's gap must be at least 1 ms".into()),
            _ => None,
        }
    }

    /// The fixed windows containing time `t` (none for sessions).
    fn assign(&self, t: i64, out: &mut Vec<(i64, i64)>) {
        out.clear();
        match self.shape {
            Shape::Tumbling { size } => {
                let start = t - t.rem_euclid(size);
                out.push((start, start.saturating_add(size)));
            }
            Shape::Sliding { size, slide } => {
                let last = t - t.rem_euclid(slide);
                let mut start = last;
                while start > t - size {
                    out.push((start, start.saturating_add(size)));
                    start -= slide;
                }
            }
            Shape::Session { gap } => out.push((t, t.saturating_add(gap))),
        }
    }
}

/// How a window folds its values: Flink's `AggregateFunction`. The accumulator must merge,
/// because session windows merge when a value bridges them.
pub trait Aggregator<T>: Send + Sync + 'static {
    /// The state kept per window and key.
    type Acc: Data;
    /// The window's result.
    type Out: Data;
    /// An empty accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds a value.
    fn add(&self, acc: &mut Self::Acc, value: T);
    /// Adds another accumulator's values.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// An [`Aggregator`] made of closures.
pub(crate) struct FnAggregator<C, A, M, R> {
    pub(crate) create: C,
    pub(crate) add: A,
    pub(crate) merge: M,
    pub(crate) result: R,
}

impl<T, Acc, Out, C, A, M, R> Aggregator<T> for FnAggregator<C, A, M, R>
where
    Acc: Data,
    Out: Data,
    C: Fn() -> Acc + Send + Sync + 'static,
    A: Fn(&mut Acc, T) + Send + Sync + 'static,
    M: Fn(&mut Acc, Acc) + Send + Sync + 'static,
    R: Fn(&Acc) -> Out + Send + Sync + 'static,
{
    type Acc = Acc;
    type Out = Out;

    fn create(&self) -> Acc {
        (self.create)()
    }

    fn add(&self, acc: &mut Acc, value: T) {
        (self.add)(acc, value);
    }

    fn merge(&self, acc: &mut Acc, other: Acc) {
        (self.merge)(acc, other);
    }

    fn result(&self, acc: &Acc) -> Out {
        (self.result)(acc)
    }
}

/// What a window operator emits: results, and the records that came too late.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WindowOut<R, T> {
    /// A window's result.
    Result(R),
    /// A record later than the allowed lateness.
    Late(T),
}

/// One window of one key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Pane<A> {
    start: i64,
    end: i64,
    acc: A,
    fired: bool,
    /// The largest timestamp of what went in.
    max_ts: i64,
}

/// A pane that fired (or fired again) and what to stamp its result.
struct Firing {
    start: i64,
    end: i64,
    time: i64,
}

/// The window operator.
pub(crate) struct WindowOp<T, K, G: Aggregator<T>> {
    window: Window,
    lateness: i64,
    key: Arc<dyn Fn(&T) -> K + Send + Sync>,
    agg: Arc<G>,
    /// Each key's windows, checkpointed copy on write.
    state: KeyedState<K, Vec<Pane<G::Acc>>>,
    /// When keys need looking at: window ends (to fire) and ends plus lateness (to evict).
    due: BTreeMap<i64, Vec<K>>,
    watermark: i64,
    tick: Option<TimerId>,
    scratch: Vec<(i64, i64)>,
}

impl<T, K, G: Aggregator<T>> WindowOp<T, K, G> {
    pub(crate) fn new(window: Window, lateness: i64, key: Arc<dyn Fn(&T) -> K + Send + Sync>, agg: Arc<G>) -> Self {
        WindowOp {
            window,
            lateness: lateness.max(0),
            key,
            agg,
            state: KeyedState::default(),
            due: BTreeMap::new(),
            watermark: i64::MIN,
            tick: None,
            scratch: Vec::new(),
        }
    }
}

/// Adds `value` (stamped `ts`, in windows of time `t`) to one key's panes. Gives the value back
/// if it was too late for every window. `fired` collects the panes that must fire at once (late
/// firings: the watermark is past their end), `new_panes` the windows made or grown.
#[allow(clippy::too_many_arguments)]
fn add_value<T: Clone, G: Aggregator<T>>(
    window: &Window,
    lateness: i64,
    agg: &G,
    watermark: i64,
    panes: &mut Vec<Pane<G::Acc>>,
    windows: &[(i64, i64)],
    value: T,
    ts: i64,
    fired: &mut Vec<Firing>,
    new_panes: &mut Vec<(i64, i64)>,
) -> Option<T> {
    let event_time = !window.processing_time;
    let live = |end: i64| !event_time || end.saturating_add(lateness) > watermark;
    if let Shape::Session { .. } = window.shape {
        let (mut start, mut end) = windows[0];
        if !live(end) {
            return Some(value);
        }
        let mut acc = agg.create();
        agg.add(&mut acc, value);
        let mut was_fired = false;
        let mut max_ts = ts;
        // Merge every session this one overlaps.
        let mut i = 0;
        while i < panes.len() {
            let p = &panes[i];
            if p.start < end && start < p.end {
                let p = panes.swap_remove(i);
                start = start.min(p.start);
                end = end.max(p.end);
                was_fired |= p.fired;
                max_ts = max_ts.max(p.max_ts);
                agg.merge(&mut acc, p.acc);
            } else {
                i += 1;
            }
        }
        let late_firing = event_time && end <= watermark;
        panes.push(Pane { start, end, acc, fired: late_firing || (was_fired && end <= watermark), max_ts });
        new_panes.push((start, end));
        if late_firing {
            fired.push(Firing { start, end, time: (end - 1).max(watermark) });
        }
        return None;
    }
    let Some(last) = windows.iter().rposition(|w| live(w.1)) else { return Some(value) };
    let mut value = Some(value);
    for (i, &(start, end)) in windows.iter().enumerate().take(last + 1) {
        if !live(end) {
            continue;
        }
        // Cloned for every window but the last it goes to.
        let v = if i == last { value.take() } else { value.clone() };
        let Some(v) = v else { break };
        let pane = match panes.iter_mut().position(|p| p.start == start && p.end == end) {
            Some(at) => &mut panes[at],
            None => {
                new_panes.push((start, end));
                let fired_already = event_time && end <= watermark;
                panes.push(Pane { start, end, acc: agg.create(), fired: fired_already, max_ts: ts });
                panes.last_mut().expect("just pushed")
            }
        };
        agg.add(&mut pane.acc, v);
        pane.max_ts = pane.max_ts.max(ts);
        if event_time && end <= watermark {
            pane.fired = true;
            fired.push(Firing { start, end, time: (end - 1).max(watermark) });
        }
    }
    None
}

/// A pane's result for `key`.
fn result_of<T, K: Clone, G: Aggregator<T>>(agg: &G, key: &K, pane: &Pane<G::Acc>) -> Windowed<K, G::Out> {
    Windowed {
        key: key.clone(),
        window: TimeWindow { start: Timestamp(pane.start), end: Timestamp(pane.end) },
        value: agg.result(&pane.acc),
    }
}

impl<T, K, G> WindowOp<T, K, G>
where
    T: Data,
    K: Key,
    G: Aggregator<T>,
{
    fn schedule(&mut self, key: &K, windows: &[(i64, i64)]) {
        for &(_, end) in windows {
            if self.window.processing_time {
                self.due.entry(end).or_default().push(key.clone());
            } else {
                if end > self.watermark {
                    self.due.entry(end).or_default().push(key.clone());
                }
                if self.lateness > 0 {
                    self.due.entry(end.saturating_add(self.lateness)).or_default().push(key.clone());
                }
            }
        }
    }

    /// Fires and evicts what is due at `now` (the watermark, or the wall clock for processing
    /// time).
    fn advance(
        &mut self,
        cx: &mut Cx<'_, '_>,
        now: i64,
        out: &mut dyn Collector<WindowOut<Windowed<K, G::Out>, T>>,
    ) -> TaskResult {
        let mut keys: Vec<K> = Vec::new();
        let mut seen = FxHashSet::default();
        while let Some(entry) = self.due.first_entry() {
            if *entry.key() > now {
                break;
            }
            for k in entry.remove() {
                if seen.insert(k.clone()) {
                    keys.push(k);
                }
            }
        }
        let processing = self.window.processing_time;
        for key in keys {
            let Some(mut panes) = self.state.map.remove(&key) else { continue };
            panes.sort_by_key(|p| (p.end, p.start));
            for pane in &mut panes {
                if !pane.fired && pane.end <= now {
                    pane.fired = true;
                    let time = if processing { pane.max_ts.max(self.watermark) } else { pane.end - 1 };
                    out.collect(cx, WindowOut::Result(result_of(&*self.agg, &key, pane)), Timestamp(time))?;
                }
            }
            let lateness = self.lateness;
            panes.retain(|p| if processing { !p.fired } else { p.end.saturating_add(lateness) > now });
            if !panes.is_empty() {
                self.state.map.insert(key, panes);
            }
        }
        Ok(())
    }
}

impl<T, K, G> Operator<T> for WindowOp<T, K, G>
where
    T: Data,
    K: Key,
    G: Aggregator<T>,
{
    type Out = WindowOut<Windowed<K, G::Out>, T>;

    fn process(
        &mut self,
        cx: &mut Cx<'_, '_>,
        value: T,
        time: Timestamp,
        out: &mut dyn Collector<Self::Out>,
    ) -> TaskResult {
        let key = (self.key)(&value);
        let t = if self.window.processing_time { Timestamp::now().0 } else { time.0 };
        let mut windows = std::mem::take(&mut self.scratch);
        self.window.assign(t, &mut windows);
        let mut fired = Vec::new();
        let mut grown = Vec::new();
        if let Some(kept) = self.state.before_change(&key, time, cx.checkpoint) {
            // A value before the checkpoint time, for a key a later one changed already: it
            // goes into the kept panes too (what it fires is fired from the current ones).
            let panes = kept.get_or_insert_with(Vec::new);
            let (mut f, mut g) = (Vec::new(), Vec::new());
            let (window, lateness, watermark) = (self.window, self.lateness, self.watermark);
            add_value(&window, lateness, &*self.agg, watermark, panes, &windows, value.clone(), time.0, &mut f, &mut g);
        }
        let panes = self.state.map.entry(key.clone()).or_default();
        let late = add_value(
            &self.window,
            self.lateness,
            &*self.agg,
            self.watermark,
            panes,
            &windows,
            value,
            time.0,
            &mut fired,
            &mut grown,
        );
        if panes.is_empty() {
            self.state.map.remove(&key);
        }
        self.scratch = windows;
        if let Some(value) = late {
            return out.collect(cx, WindowOut::Late(value), time);
        }
        self.schedule(&key, &grown);
        if let Some(panes) = self.state.map.get(&key) {
            for f in fired {
                if let Some(p) = panes.iter().find(|p| p.start == f.start && p.end == f.end) {
                    out.collect(cx, WindowOut::Result(result_of(&*self.agg, &key, p)), Timestamp(f.time))?;
                }
            }
        }
        Ok(())
    }

    fn control(
        &mut self,
        cx: &mut Cx<'_, '_>,
        event: &mut Control<'_>,
        out: &mut dyn Collector<Self::Out>,
    ) -> TaskResult {
        match event {
            Control::Restore(restore) => self.state.restore(restore)?,
            Control::Start(start) => {
                if self.window.processing_time {
                    let every = match self.window.shape {
                        Shape::Tumbling { size } => size,
                        Shape::Sliding { slide, .. } => slide,
                        Shape::Session { gap } => gap,
                    };
                    let every = Duration::from_millis((every / 10).clamp(10, 1000) as u64);
                    self.tick = Some(cx.ctx().schedule(every, every));
                } else {
                    self.watermark = start.0.0;
                }
                // After a recovery from T, windows ending by T fired before it.
                let restart = start.0.0;
                let processing = self.window.processing_time;
                let keys: Vec<K> = self.state.map.keys().cloned().collect();
                for k in keys {
                    let panes = self.state.map.get_mut(&k).expect("a key just listed");
                    let mut ends = Vec::new();
                    for p in panes.iter_mut() {
                        if !processing {
                            p.fired = p.end <= restart;
                        }
                        ends.push((p.start, p.end));
                    }
                    self.schedule(&k, &ends);
                }
                if !processing {
                    let now = self.watermark;
                    self.advance(cx, now, out)?;
                }
            }
            Control::Watermark(w) => {
                self.watermark = self.watermark.max(w.0);
                if !self.window.processing_time {
                    let now = self.watermark;
                    self.advance(cx, now, out)?;
                }
            }
            Control::Timer(id) if Some(*id) == self.tick => {
                let now = Timestamp::now().0;
                self.advance(cx, now, out)?;
            }
            Control::Snapshot(parts) => parts.push(self.state.snapshot()?),
            Control::Advance => self.state.advance(),
            Control::Stop => {
                if let Some(t) = self.tick.take() {
                    cx.ctx().cancel(t);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Takes the results out of a window operator's output.
pub(crate) fn results<R, T>(out: WindowOut<R, T>) -> Option<R> {
    match out {
        WindowOut::Result(r) => Some(r),
        WindowOut::Late(_) => None,
    }
}

/// Takes the late records out of a window operator's output.
pub(crate) fn late<R, T>(out: WindowOut<R, T>) -> Option<T> {
    match out {
        WindowOut::Result(_) => None,
        WindowOut::Late(t) => Some(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Link, Restore};
    use crate::testing::{Record, with_cx};
    use gearpump_api::StartTime;
    use gearpump_core::Timestamp as Ts;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// An input of a window operator: a record, or the watermark moving.
    #[derive(Clone, Debug)]
    enum Event {
        Record { key: u8, ts: i64, value: u64 },
        Watermark(i64),
    }

    type Out = WindowOut<Windowed<u8, u64>, (u8, u64)>;

    fn sum_agg() -> FnAggregator<
        impl Fn() -> u64 + Send + Sync,
        impl Fn(&mut u64, (u8, u64)) + Send + Sync,
        impl Fn(&mut u64, u64) + Send + Sync,
        impl Fn(&u64) -> u64 + Send + Sync,
    > {
        FnAggregator {
            create: || 0u64,
            add: |s: &mut u64, v: (u8, u64)| *s += v.1,
            merge: |s: &mut u64, o| *s += o,
            result: |s: &u64| *s,
        }
    }

    /// Runs the operator over `events`; returns the results `(key, start, end, sum, stamp)`
    /// and the late records, sorted.
    fn run_operator(
        window: Window,
        lateness: i64,
        events: &[Event],
    ) -> (Vec<(u8, i64, i64, u64, i64)>, Vec<(u8, u64)>) {
        let seen: Arc<Mutex<Vec<(Out, Timestamp)>>> = Arc::default();
        let key: Arc<dyn Fn(&(u8, u64)) -> u8 + Send + Sync> = Arc::new(|v: &(u8, u64)| v.0);
        let op = WindowOp::new(window, lateness, key, Arc::new(sum_agg()));
        let mut link: Link<(u8, u64), _> = Link::new(op, Box::new(Record(seen.clone())));
        with_cx(Timestamp::MAX, |cx| {
            link.control(cx, &mut Control::Start(StartTime(Timestamp::MIN))).unwrap();
            for e in events {
                match *e {
                    Event::Record { key, ts, value } => link.collect(cx, (key, value), Timestamp(ts)).unwrap(),
                    Event::Watermark(w) => link.control(cx, &mut Control::Watermark(Timestamp(w))).unwrap(),
                }
            }
        });
        split(&seen.lock().unwrap())
    }

    fn split(seen: &[(Out, Timestamp)]) -> (Vec<(u8, i64, i64, u64, i64)>, Vec<(u8, u64)>) {
        let mut results = Vec::new();
        let mut late = Vec::new();
        for (out, t) in seen {
            match out {
                WindowOut::Result(w) => results.push((w.key, w.window.start.0, w.window.end.0, w.value, t.0)),
                WindowOut::Late(v) => late.push(*v),
            }
        }
        results.sort_unstable();
        late.sort_unstable();
        (results, late)
    }

    /// The same windows computed plainly: every window keeps its values in a list, and every
    /// watermark looks at every window.
    fn run_model(window: Window, lateness: i64, events: &[Event]) -> (Vec<(u8, i64, i64, u64, i64)>, Vec<(u8, u64)>) {
        struct W {
            start: i64,
            end: i64,
            values: Vec<u64>,
            fired: bool,
        }
        let mut wm = i64::MIN;
        let mut windows: HashMap<u8, Vec<W>> = HashMap::new();
        let mut results = Vec::new();
        let mut late = Vec::new();
        let mut assigned = Vec::new();
        for e in events {
            match *e {
                Event::Record { key, ts, value } => {
                    window.assign(ts, &mut assigned);
                    let list = windows.entry(key).or_default();
                    let live: Vec<(i64, i64)> =
                        assigned.iter().copied().filter(|(_, end)| end.saturating_add(lateness) > wm).collect();
                    if live.is_empty() {
                        late.push((key, value));
                        continue;
                    }
                    if let Shape::Session { .. } = window.shape {
                        let (s0, e0) = live[0];
                        let (mut start, mut end, mut values) = (s0, e0, vec![value]);
                        let mut keep = Vec::new();
                        for w in list.drain(..) {
                            if w.start < e0 && s0 < w.end {
                                start = start.min(w.start);
                                end = end.max(w.end);
                                values.extend(w.values);
                            } else {
                                keep.push(w);
                            }
                        }
                        let fired = end <= wm;
                        if fired {
                            results.push((key, start, end, values.iter().sum(), (end - 1).max(wm)));
                        }
                        keep.push(W { start, end, values, fired });
                        *list = keep;
                        continue;
                    }
                    for (start, end) in live {
                        let w = match list.iter_mut().position(|w| w.start == start && w.end == end) {
                            Some(i) => &mut list[i],
                            None => {
                                list.push(W { start, end, values: Vec::new(), fired: false });
                                list.last_mut().unwrap()
                            }
                        };
                        w.values.push(value);
                        if end <= wm {
                            w.fired = true;
                            results.push((key, start, end, w.values.iter().sum(), (end - 1).max(wm)));
                        }
                    }
                }
                Event::Watermark(w) => {
                    wm = wm.max(w);
                    for (key, list) in &mut windows {
                        for w in list.iter_mut() {
                            if !w.fired && w.end <= wm {
                                w.fired = true;
                                results.push((*key, w.start, w.end, w.values.iter().sum(), w.end - 1));
                            }
                        }
                        list.retain(|w| w.end.saturating_add(lateness) > wm);
                    }
                }
            }
        }
        results.sort_unstable();
        late.sort_unstable();
        (results, late)
    }

    fn events() -> impl Strategy<Value = Vec<Event>> {
        // Records with times around a rising base, watermarks trailing the largest time by a
        // random delay; the last watermark closes everything.
        prop::collection::vec((0u8..3, 0i64..40, 1u64..100, prop::option::weighted(0.3, 0i64..60)), 1..120).prop_map(
            |raw| {
                let mut events = Vec::new();
                let (mut base, mut max_ts, mut wm) = (0i64, i64::MIN, i64::MIN);
                for (key, jitter, value, delay) in raw {
                    base += 2;
                    let ts = base - jitter;
                    max_ts = max_ts.max(ts);
                    events.push(Event::Record { key, ts, value });
                    if let Some(d) = delay {
                        let w = max_ts - d;
                        if w > wm {
                            wm = w;
                            events.push(Event::Watermark(w));
                        }
                    }
                }
                events.push(Event::Watermark(i64::MAX));
                events
            },
        )
    }

    fn any_window() -> impl Strategy<Value = Window> {
        prop_oneof![
            (1u64..30).prop_map(|g| Window::session(Duration::from_millis(g))),
            (1u64..50).prop_map(|s| Window::tumbling(Duration::from_millis(s))),
            (1u64..50)
                .prop_flat_map(|size| (Just(size), 1..=size))
                .prop_map(|(size, slide)| Window::sliding(Duration::from_millis(size), Duration::from_millis(slide))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn windows_match_a_plain_computation(window in any_window(), lateness in prop_oneof![Just(0i64), 0i64..30], events in events()) {
            prop_assert_eq!(run_operator(window, lateness, &events), run_model(window, lateness, &events));
        }
    }

    /// Records whose times never fall below an earlier watermark (nothing late), with
    /// watermarks trailing the smallest time still to come.
    fn in_order_events() -> impl Strategy<Value = Vec<Event>> {
        prop::collection::vec((0u8..3, 0i64..20, 1u64..100, prop::option::weighted(0.3, 0i64..10)), 1..100).prop_map(
            |raw| {
                let mut ts = Vec::new();
                let mut base = 0;
                for (_, jitter, _, _) in &raw {
                    base += 2;
                    ts.push(base - jitter);
                }
                let mut events = Vec::new();
                let mut wm = i64::MIN;
                for (i, (key, _, value, delay)) in raw.into_iter().enumerate() {
                    events.push(Event::Record { key, ts: ts[i], value });
                    if let (Some(d), Some(next)) = (delay, ts[i + 1..].iter().min()) {
                        let w = next - d;
                        if w > wm {
                            wm = w;
                            events.push(Event::Watermark(w));
                        }
                    }
                }
                events.push(Event::Watermark(i64::MAX));
                events
            },
        )
    }

    /// Runs the operator as a task would with checkpoints at `tc`: crashes right after the
    /// checkpoint at `tc` is taken, restores a fresh operator from it and replays what a source
    /// replays from `tc`. Returns the results of the restored operator.
    fn run_with_recovery(window: Window, events: &[Event], tc: i64) -> Option<Vec<(u8, i64, i64, u64, i64)>> {
        let key: Arc<dyn Fn(&(u8, u64)) -> u8 + Send + Sync> = Arc::new(|v: &(u8, u64)| v.0);
        let first: Arc<Mutex<Vec<(Out, Ts)>>> = Arc::default();
        let mut link: Link<(u8, u64), _> =
            Link::new(WindowOp::new(window, 0, key.clone(), Arc::new(sum_agg())), Box::new(Record(first)));
        let mut saved = None;
        with_cx(Ts(tc), |cx| {
            link.control(cx, &mut Control::Start(StartTime(Ts::MIN))).unwrap();
            for e in events {
                match *e {
                    Event::Record { key, ts, value } => link.collect(cx, (key, value), Ts(ts)).unwrap(),
                    Event::Watermark(w) => {
                        if w >= tc {
                            let mut parts = Vec::new();
                            link.control(cx, &mut Control::Snapshot(&mut parts)).unwrap();
                            saved = Some(parts);
                            return;
                        }
                        link.control(cx, &mut Control::Watermark(Ts(w))).unwrap();
                    }
                }
            }
        });
        let parts = saved?;
        let seen: Arc<Mutex<Vec<(Out, Ts)>>> = Arc::default();
        let mut link: Link<(u8, u64), _> =
            Link::new(WindowOp::new(window, 0, key, Arc::new(sum_agg())), Box::new(Record(seen.clone())));
        with_cx(Ts::MAX, |cx| {
            let mut restore = Restore { blobs: vec![parts], next: 0, split: None };
            link.control(cx, &mut Control::Restore(&mut restore)).unwrap();
            link.control(cx, &mut Control::Start(StartTime(Ts(tc)))).unwrap();
            for e in events {
                match *e {
                    Event::Record { key, ts, value } if ts >= tc => link.collect(cx, (key, value), Ts(ts)).unwrap(),
                    Event::Watermark(w) if w >= tc => link.control(cx, &mut Control::Watermark(Ts(w))).unwrap(),
                    _ => {}
                }
            }
        });
        let (results, late) = split(&seen.lock().unwrap());
        assert!(late.is_empty());
        Some(results)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Exactly once: after a recovery from a checkpoint, the results stamped from the
        /// checkpoint time on are those of a run without failure, and nothing before it is
        /// emitted again.
        #[test]
        fn a_recovered_window_emits_what_an_unbroken_one_does(window in any_window(), events in in_order_events(), tc in 1i64..200) {
            if let Some(recovered) = run_with_recovery(window, &events, tc) {
                let (unbroken, late) = run_operator(window, 0, &events);
                prop_assert!(late.is_empty());
                let after: Vec<_> = unbroken.into_iter().filter(|r| r.4 >= tc).collect();
                prop_assert_eq!(recovered, after);
            }
        }
    }
}
