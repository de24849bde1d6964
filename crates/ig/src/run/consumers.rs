//! The caller's consumers of a run's events: a callback on the run's
//! thread ([`EventSink`]), or a bounded channel ([`EventReceiver`]).
//!
//! Both are subscribed, like the printer, at the output's priority to
//! every data source later operators see, so they get events after the
//! filters, sort and limit. A sink sees the event in place (zero-copy,
//! nothing per event but the call). The channel copies each event and
//! hands it over with `try_send`: a full channel drops it and counts it
//! ([`crate::pipeline::Notice::ConsumerLagged`]), never waits, so a slow
//! consumer cannot stall the run or make the kernel drop.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::datasource::{Event, Schema};
use crate::output::DroppedRecords;
use crate::pipeline::{
    Flow, Handler, HandlerError, Instance, Notice, Operator, OperatorError, Pipeline, Priority,
    Setup, SourceId, priority,
};

/// Receives a run's events on the run's thread. Implement it for a
/// consumer with state; [`super::GadgetRun::on_event`] takes a closure.
///
/// Every method runs on the hot path of the run's thread: it should not
/// block, and what it does per event is what the run costs per event.
pub trait EventSink: Send + 'static {
    /// The run has started; these are its data sources, in [`SourceId`]
    /// order.
    fn on_start(&mut self, _sources: &[Arc<Schema>]) {}

    /// One event of the data source `schema` describes.
    fn on_event(&mut self, schema: &Schema, event: &Event);

    /// A whole snapshot of an array source (an iterator, a topper's
    /// interval). By default, each element in turn.
    fn on_array(&mut self, schema: &Schema, events: &[Event]) {
        for e in events {
            self.on_event(schema, e);
        }
    }

    /// A loss report or a warning.
    fn on_notice(&mut self, _notice: &Notice) {}

    /// On the run's flush timer ([`super::GadgetRun::flush_interval`]),
    /// right after the events pending at that moment, and at the end: a
    /// sink that batches events hands on what it holds, so that no event
    /// waits longer than the timer.
    fn flush(&mut self) {}

    /// True once the consumer wants no more: the run ends
    /// ([`super::StopReason::OutputClosed`]).
    fn is_closed(&self) -> bool {
        false
    }
}

/// A closure as an [`EventSink`].
pub(super) struct Callback<F>(pub F);

impl<F: FnMut(&Schema, &Event) + Send + 'static> EventSink for Callback<F> {
    fn on_event(&mut self, schema: &Schema, event: &Event) {
        (self.0)(schema, event);
    }
}

/// What the channel of [`super::GadgetRun::event_channel`] carries.
#[derive(Debug)]
pub enum RunEvent {
    /// The run started (everything is loaded): its data sources.
    Started {
        /// In [`SourceId`] order.
        sources: Vec<Arc<Schema>>,
    },
    /// One event.
    Event {
        /// Its data source.
        schema: Arc<Schema>,
        /// A copy of the event.
        event: Event,
    },
    /// A snapshot of an array source.
    Array {
        /// Its data source.
        schema: Arc<Schema>,
        /// A copy of the snapshot.
        events: Vec<Event>,
    },
    /// A loss report or a warning.
    Notice(Notice),
}

/// The receiving end of a run's channel. The run ends when it is dropped.
#[derive(Debug)]
pub struct EventReceiver(mpsc::Receiver<RunEvent>);

impl EventReceiver {
    /// The next item, waiting for it; `None` once the run has ended and
    /// everything was taken. For plain threads: must not be called from
    /// async code (use [`EventReceiver::recv`] there).
    pub fn recv_blocking(&mut self) -> Option<RunEvent> {
        self.0.blocking_recv()
    }

    /// The next item; `None` once the run has ended and everything was
    /// taken. Works on any async runtime.
    pub async fn recv(&mut self) -> Option<RunEvent> {
        self.0.recv().await
    }

    /// The next item if one is waiting.
    pub fn try_recv(&mut self) -> Option<RunEvent> {
        self.0.try_recv().ok()
    }
}

pub(super) fn channel(capacity: usize) -> (mpsc::Sender<RunEvent>, EventReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (tx, EventReceiver(rx))
}

/// A consumer as the builder holds it (`Send`).
pub(super) enum Consumer {
    Sink(Box<dyn EventSink>),
    Channel(mpsc::Sender<RunEvent>),
}

/// A consumer once the run is being assembled, on the run's thread.
#[derive(Clone)]
enum Live {
    Sink(Rc<RefCell<Box<dyn EventSink>>>),
    Channel(Rc<ChannelState>),
}

struct ChannelState {
    tx: mpsc::Sender<RunEvent>,
    /// The run's schemas by source, known once the chain is built.
    schemas: RefCell<Vec<Arc<Schema>>>,
    lagged: DroppedRecords,
    closed: Cell<bool>,
}

impl ChannelState {
    fn send(&self, item: RunEvent) {
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.lagged.add(1),
            Err(mpsc::error::TrySendError::Closed(_)) => self.closed.set(true),
        }
    }
}

/// The consumers of one run, attached to its chain.
#[derive(Clone, Default)]
pub(super) struct Attached {
    live: Vec<Live>,
    /// What the channels dropped, counted together.
    lagged: Option<DroppedRecords>,
}

/// Add an operator per consumer to `ops`; the result reaches them outside
/// the chain (start, notices).
pub(super) fn attach(consumers: Vec<Consumer>, ops: &mut Vec<Box<dyn Operator>>) -> Attached {
    let lagged = DroppedRecords::default();
    let mut any_channel = false;
    let live: Vec<Live> = consumers
        .into_iter()
        .map(|c| match c {
            Consumer::Sink(s) => Live::Sink(Rc::new(RefCell::new(s))),
            Consumer::Channel(tx) => {
                any_channel = true;
                Live::Channel(Rc::new(ChannelState {
                    tx,
                    schemas: RefCell::new(Vec::new()),
                    lagged: lagged.clone(),
                    closed: Cell::new(false),
                }))
            }
        })
        .collect();
    for l in &live {
        ops.push(Box::new(ConsumerOperator(l.clone())));
    }
    Attached {
        live,
        lagged: any_channel.then_some(lagged),
    }
}

impl Attached {
    /// The chain is built: the channels learn the schemas.
    pub fn built(&self, p: &Pipeline) {
        let schemas: Vec<Arc<Schema>> = p.dispatch.schemas().map(|(_, s)| s.clone()).collect();
        for l in &self.live {
            if let Live::Channel(c) = l {
                *c.schemas.borrow_mut() = schemas.clone();
            }
        }
    }

    /// The run has started.
    pub fn started(&self, p: &Pipeline) {
        let schemas: Vec<Arc<Schema>> = p.dispatch.schemas().map(|(_, s)| s.clone()).collect();
        for l in &self.live {
            match l {
                Live::Sink(s) => s.borrow_mut().on_start(&schemas),
                Live::Channel(c) => c.send(RunEvent::Started {
                    sources: schemas.clone(),
                }),
            }
        }
    }

    /// A loss report or warning.
    pub fn notice(&self, n: &Notice) {
        for l in &self.live {
            match l {
                Live::Sink(s) => s.borrow_mut().on_notice(n),
                Live::Channel(c) => c.send(RunEvent::Notice(n.clone())),
            }
        }
    }

    /// The count of events the channels dropped, if there is a channel.
    pub fn lagged(&self) -> Option<DroppedRecords> {
        self.lagged.clone()
    }
}

/// Subscribes one consumer to every data source.
struct ConsumerOperator(Live);

struct Subscribed;
impl Instance for Subscribed {}

impl Operator for ConsumerOperator {
    fn name(&self) -> &'static str {
        "consumer"
    }
    fn priority(&self) -> Priority {
        priority::OUTPUT
    }
    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        for id in setup.source_ids() {
            setup.subscribe(
                id,
                priority::OUTPUT,
                "consumer",
                Box::new(ConsumerHandler {
                    consumer: self.0.clone(),
                    source: id,
                }),
            );
        }
        Ok(Some(Box::new(Subscribed)))
    }
}

struct ConsumerHandler {
    consumer: Live,
    source: SourceId,
}

impl ConsumerHandler {
    fn schema(c: &ChannelState, source: SourceId) -> Option<Arc<Schema>> {
        c.schemas.borrow().get(source.0).cloned()
    }
}

impl Handler for ConsumerHandler {
    fn on_event(&mut self, schema: &Schema, event: &mut Event) -> Flow {
        match &self.consumer {
            Live::Sink(s) => s.borrow_mut().on_event(schema, event),
            Live::Channel(c) => {
                if let Some(schema) = Self::schema(c, self.source) {
                    c.send(RunEvent::Event {
                        schema,
                        event: event.clone(),
                    });
                }
            }
        }
        Flow::Continue
    }

    fn on_array(&mut self, schema: &Schema, events: &mut Vec<Event>) -> Flow {
        match &self.consumer {
            Live::Sink(s) => s.borrow_mut().on_array(schema, events),
            Live::Channel(c) => {
                if let Some(schema) = Self::schema(c, self.source) {
                    c.send(RunEvent::Array {
                        schema,
                        events: events.clone(),
                    });
                }
            }
        }
        Flow::Continue
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        let closed = match &self.consumer {
            Live::Sink(s) => {
                let mut s = s.borrow_mut();
                s.flush();
                s.is_closed()
            }
            Live::Channel(c) => c.closed.get(),
        };
        if closed {
            Err(HandlerError::Closed)
        } else {
            Ok(())
        }
    }
}
