//! The stateless operators and the sinks, as [`Operator`]s of a chain.

use crate::chain::{Collector, Control, Cx, Operator};
use gearpump_api::{DataSink, SinkTask, TaskResult, TimerId};
use gearpump_core::{Message, Timestamp, Value};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// `map`: one value out per value in.
pub(crate) struct Map<F>(pub(crate) Arc<F>);

impl<T, U, F> Operator<T> for Map<F>
where
    F: Fn(T) -> U + Send + Sync + 'static,
{
    type Out = U;

    #[inline]
    fn process(&mut self, cx: &mut Cx<'_, '_>, value: T, time: Timestamp, out: &mut dyn Collector<U>) -> TaskResult {
        out.collect(cx, (self.0)(value), time)
    }
}

/// `flat_map`: any number of values out per value in, all stamped as the one in.
pub(crate) struct FlatMap<F>(pub(crate) Arc<F>);

impl<T, U, I, F> Operator<T> for FlatMap<F>
where
    I: IntoIterator<Item = U>,
    F: Fn(T) -> I + Send + Sync + 'static,
{
    type Out = U;

    #[inline]
    fn process(&mut self, cx: &mut Cx<'_, '_>, value: T, time: Timestamp, out: &mut dyn Collector<U>) -> TaskResult {
        for v in (self.0)(value) {
            out.collect(cx, v, time)?;
        }
        Ok(())
    }
}

/// `filter`: the values the predicate keeps.
pub(crate) struct Filter<F>(pub(crate) Arc<F>);

impl<T, F> Operator<T> for Filter<F>
where
    F: Fn(&T) -> bool + Send + Sync + 'static,
{
    type Out = T;

    #[inline]
    fn process(&mut self, cx: &mut Cx<'_, '_>, value: T, time: Timestamp, out: &mut dyn Collector<T>) -> TaskResult {
        if (self.0)(&value) { out.collect(cx, value, time) } else { Ok(()) }
    }
}

/// `inspect`: looks at each value and passes it on.
pub(crate) struct Inspect<F>(pub(crate) Arc<F>);

impl<T, F> Operator<T> for Inspect<F>
where
    F: Fn(&T) + Send + Sync + 'static,
{
    type Out = T;

    #[inline]
    fn process(&mut self, cx: &mut Cx<'_, '_>, value: T, time: Timestamp, out: &mut dyn Collector<T>) -> TaskResult {
        (self.0)(&value);
        out.collect(cx, value, time)
    }
}

/// `for_each`: hands each value and its time to a function; the end of a stream.
pub(crate) struct ForEach<F>(pub(crate) Arc<F>);

impl<T, F> Operator<T> for ForEach<F>
where
    F: Fn(T, Timestamp) + Send + Sync + 'static,
{
    type Out = ();

    #[inline]
    fn process(&mut self, _cx: &mut Cx<'_, '_>, value: T, time: Timestamp, _out: &mut dyn Collector<()>) -> TaskResult {
        (self.0)(value, time);
        Ok(())
    }
}

/// Passes values on unchanged (the head of a union).
pub(crate) struct Identity;

impl<T> Operator<T> for Identity {
    type Out = T;

    #[inline]
    fn process(&mut self, cx: &mut Cx<'_, '_>, value: T, time: Timestamp, out: &mut dyn Collector<T>) -> TaskResult {
        out.collect(cx, value, time)
    }
}

/// A [`DataSink`] at the end of a chain, run as [`SinkTask`] runs one: flushed on a timer,
/// told of watermarks and completed checkpoints, closed when the task stops.
pub(crate) struct Sink<S, T> {
    pub(crate) sink: S,
    pub(crate) flush: Option<TimerId>,
    pub(crate) _t: PhantomData<fn(T)>,
}

impl<S: DataSink, T: Value> Operator<T> for Sink<S, T> {
    type Out = ();

    #[inline]
    fn process(&mut self, _cx: &mut Cx<'_, '_>, value: T, time: Timestamp, _out: &mut dyn Collector<()>) -> TaskResult {
        self.sink.write(Message::new(value, time))
    }

    fn control(&mut self, cx: &mut Cx<'_, '_>, event: &mut Control<'_>, _out: &mut dyn Collector<()>) -> TaskResult {
        match event {
            Control::Start(_) => {
                let every: u64 = cx.ctx().config().get_or(SinkTask::<S>::FLUSH_INTERVAL_KEY, 100)?;
                self.sink.open(cx.ctx())?;
                let every = Duration::from_millis(every.max(1));
                self.flush = Some(cx.ctx().schedule(every, every));
            }
            Control::Timer(id) if Some(*id) == self.flush => self.sink.flush()?,
            Control::Watermark(w) => self.sink.on_watermark_progress(cx.ctx(), *w)?,
            Control::CheckpointComplete(t) => self.sink.on_checkpoint_complete(cx.ctx(), *t)?,
            Control::OwnWatermark(w) => {
                if let Some(mine) = self.sink.watermark() {
                    **w = Some(w.map_or(mine, |other| other.min(mine)));
                }
            }
            Control::Stop => {
                if let Some(t) = self.flush.take() {
                    cx.ctx().cancel(t);
                }
                self.sink.close();
            }
            _ => {}
        }
        Ok(())
    }
}
