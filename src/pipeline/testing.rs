//! Test doubles for the operator sandwich: a [`Producer`] operator that
//! declares one data source and replays raw samples, and a [`Collector`]
//! that records what reached it. Used by the tests of every operator and of
//! the pipeline itself; no kernel involved.

use std::cell::RefCell;
use std::rc::Rc;

use super::{
    Dispatch, Flow, Handler, Instance, Operator, OperatorError, Priority, Setup, Source, SourceId,
};
use crate::datasource::{Event, Schema, SchemaBuilder, ValueRef};

/// Declares `schema` at its priority and emits `samples` on the first drain.
pub struct Producer {
    /// Where it runs.
    pub priority: Priority,
    /// The data source it declares.
    pub schema: SchemaBuilder,
    /// Raw samples, emitted in order.
    pub samples: Vec<Vec<u8>>,
}

struct ProducerInstance {
    id: SourceId,
    samples: Vec<Vec<u8>>,
    done: bool,
}

impl Operator for Producer {
    fn name(&self) -> &'static str {
        "producer"
    }
    fn priority(&self) -> Priority {
        self.priority
    }
    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let id = setup.add_source(self.schema);
        Ok(Some(Box::new(ProducerInstance {
            id,
            samples: self.samples,
            done: false,
        })))
    }
}

impl Instance for ProducerInstance {
    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

impl Source for ProducerInstance {
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }
    fn drain(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        let mut ev = Event::new(out.schema(self.id));
        for s in self.samples.drain(..) {
            ev.set_raw(&s);
            out.event(self.id, &mut ev);
        }
        self.done = true;
        Ok(())
    }
    fn finished(&self) -> bool {
        self.done
    }
}

/// Declares an array data source (`schema`) and emits each of `arrays`
/// (a snapshot of raw samples) through [`Dispatch::array`] on the first
/// drain.
pub struct ArrayProducer {
    /// Where it runs.
    pub priority: Priority,
    /// The data source it declares.
    pub schema: SchemaBuilder,
    /// Snapshots, each a list of raw samples.
    pub arrays: Vec<Vec<Vec<u8>>>,
}

struct ArrayProducerInstance {
    id: SourceId,
    arrays: Vec<Vec<Vec<u8>>>,
    done: bool,
}

impl Operator for ArrayProducer {
    fn name(&self) -> &'static str {
        "array-producer"
    }
    fn priority(&self) -> Priority {
        self.priority
    }
    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let id = setup.add_source(self.schema);
        Ok(Some(Box::new(ArrayProducerInstance {
            id,
            arrays: self.arrays,
            done: false,
        })))
    }
}

impl Instance for ArrayProducerInstance {
    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

impl Source for ArrayProducerInstance {
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }
    fn drain(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        for samples in self.arrays.drain(..) {
            let schema = out.schema(self.id).clone();
            let mut events: Vec<Event> = samples
                .iter()
                .map(|s| {
                    let mut e = Event::new(&schema);
                    e.set_raw(s);
                    e
                })
                .collect();
            out.array(self.id, &mut events);
        }
        self.done = true;
        Ok(())
    }
    fn finished(&self) -> bool {
        self.done
    }
}

/// Records every event as `field=value` strings (visible leaf fields only),
/// and the length of every array it receives.
#[derive(Clone, Default)]
pub struct Collector {
    /// Each event seen, as `field=value` strings.
    pub seen: Rc<RefCell<Vec<Vec<String>>>>,
    /// The length of each array seen.
    pub arrays: Rc<RefCell<Vec<usize>>>,
}

impl Collector {
    /// The value of `field` in every event seen, as text (`None` where the
    /// event did not have it).
    pub fn column(&self, field: &str) -> Vec<Option<String>> {
        let prefix = format!("{field}=");
        self.seen
            .borrow()
            .iter()
            .map(|row| {
                row.iter()
                    .find_map(|c| c.strip_prefix(&prefix).map(str::to_owned))
            })
            .collect()
    }
}

impl Handler for Collector {
    fn on_array(&mut self, schema: &Schema, events: &mut Vec<Event>) -> Flow {
        self.arrays.borrow_mut().push(events.len());
        for e in events.iter_mut() {
            self.on_event(schema, e);
        }
        Flow::Continue
    }

    fn on_event(&mut self, schema: &Schema, event: &mut Event) -> Flow {
        let row = schema
            .fields()
            .iter()
            .filter(|f| !f.hidden)
            .filter_map(|f| {
                let v = match event.get(f) {
                    ValueRef::None => return None,
                    ValueRef::Bool(b) => b.to_string(),
                    ValueRef::U64(v) => v.to_string(),
                    ValueRef::I64(v) => v.to_string(),
                    ValueRef::F64(v) => v.to_string(),
                    ValueRef::Str(s) | ValueRef::Bytes(s) => {
                        String::from_utf8_lossy(s).into_owned()
                    }
                };
                Some(format!("{}={v}", f.name))
            })
            .collect();
        self.seen.borrow_mut().push(row);
        Flow::Continue
    }
}

/// An operator that subscribes a handler to every data source.
pub struct Subscribe<H: Handler + Clone + 'static> {
    /// Its name.
    pub name: &'static str,
    /// Where it runs.
    pub priority: Priority,
    /// The handler subscribed to every data source.
    pub handler: H,
}

impl<H: Handler + Clone + 'static> Operator for Subscribe<H> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn priority(&self) -> Priority {
        self.priority
    }
    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        for id in setup.source_ids() {
            setup.subscribe(id, self.priority, self.name, Box::new(self.handler.clone()));
        }
        Ok(Some(Box::new(Inert)))
    }
}

struct Inert;
impl Instance for Inert {}

/// Build `ops` plus a [`Collector`] at the output priority, run them to
/// the end as the runner would, and return what reached the collector.
pub fn collect(
    mut ops: Vec<Box<dyn Operator>>,
    params: &crate::params::ParamValues,
) -> Result<Collector, OperatorError> {
    let col = Collector::default();
    ops.push(Box::new(Subscribe {
        name: "collector",
        priority: super::priority::OUTPUT,
        handler: col.clone(),
    }));
    let mut p = super::Pipeline::build(ops, params)?;
    p.start()?;
    drain_all(&mut p)?;
    p.dispatch.flush()?;
    p.stop()?;
    Ok(col)
}

/// Drive a pipeline's sources until they are finished (at most a few
/// rounds), as the real runner would, without any waiting.
pub fn drain_all(p: &mut super::Pipeline) -> Result<(), OperatorError> {
    for _ in 0..8 {
        let (sources, dispatch) = p.parts();
        let mut all_done = true;
        for s in sources {
            if !s.finished() {
                s.drain(dispatch)?;
                all_done &= s.finished();
            }
        }
        if all_done {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::{FieldKind, SourceKind};
    use crate::params::ParamValues;
    use crate::pipeline::{HandlerError, Pipeline};

    fn producer(samples: Vec<Vec<u8>>) -> Box<Producer> {
        let mut schema = SchemaBuilder::new("ds", SourceKind::Single, 4);
        schema
            .add_raw("n".into(), FieldKind::U32, 0, 4, None)
            .unwrap();
        Box::new(Producer {
            priority: -1,
            schema,
            samples,
        })
    }

    #[derive(Clone)]
    struct DropOdd;
    impl Handler for DropOdd {
        fn on_event(&mut self, schema: &Schema, event: &mut Event) -> Flow {
            match event.get(schema.field(schema.field_by_name("n").unwrap())) {
                ValueRef::U64(n) if n % 2 == 1 => Flow::Drop,
                _ => Flow::Continue,
            }
        }
    }

    #[test]
    fn handlers_run_in_priority_order_and_drop_stops_the_chain() {
        let col = Collector::default();
        let ops: Vec<Box<dyn Operator>> = vec![
            Box::new(Subscribe {
                name: "collect",
                priority: 10,
                handler: col.clone(),
            }),
            Box::new(Subscribe {
                name: "filter",
                priority: 5,
                handler: DropOdd,
            }),
            producer((0u32..4).map(|n| n.to_ne_bytes().to_vec()).collect()),
        ];
        let mut p = Pipeline::build(ops, &ParamValues::default()).unwrap();
        assert_eq!(p.operator_names(), ["producer", "filter", "collect"]);
        p.start().unwrap();
        drain_all(&mut p).unwrap();
        p.stop().unwrap();
        assert_eq!(
            *col.seen.borrow(),
            vec![vec!["n=0".to_string()], vec!["n=2".to_string()]]
        );
    }

    /// Logs its lifecycle calls into a shared journal.
    struct Journal {
        name: &'static str,
        priority: Priority,
        fail_start: bool,
        log: Rc<RefCell<Vec<String>>>,
    }
    struct JournalInstance(&'static str, bool, Rc<RefCell<Vec<String>>>);
    impl Operator for Journal {
        fn name(&self) -> &'static str {
            self.name
        }
        fn priority(&self) -> Priority {
            self.priority
        }
        fn instantiate(
            self: Box<Self>,
            _: &mut Setup,
        ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
            Ok(Some(Box::new(JournalInstance(
                self.name,
                self.fail_start,
                self.log,
            ))))
        }
    }
    impl Instance for JournalInstance {
        fn start(&mut self) -> Result<(), OperatorError> {
            self.2.borrow_mut().push(format!("start {}", self.0));
            if self.1 {
                Err(OperatorError::failed(self.0, "boom"))
            } else {
                Ok(())
            }
        }
        fn stop(&mut self) -> Result<(), OperatorError> {
            self.2.borrow_mut().push(format!("stop {}", self.0));
            Ok(())
        }
    }

    type Log = Rc<RefCell<Vec<String>>>;

    fn journal(names: &[(&'static str, Priority, bool)]) -> (Vec<Box<dyn Operator>>, Log) {
        let log = Rc::new(RefCell::new(Vec::new()));
        let ops = names
            .iter()
            .map(|&(name, priority, fail_start)| {
                Box::new(Journal {
                    name,
                    priority,
                    fail_start,
                    log: log.clone(),
                }) as Box<dyn Operator>
            })
            .collect();
        (ops, log)
    }

    #[test]
    fn start_in_order_stop_in_reverse_ties_broken_by_name() {
        let (ops, log) = journal(&[("b", 0, false), ("a", 0, false), ("z", -5, false)]);
        let mut p = Pipeline::build(ops, &ParamValues::default()).unwrap();
        p.start().unwrap();
        p.stop().unwrap();
        assert_eq!(
            *log.borrow(),
            [
                "start z", "start a", "start b", "stop b", "stop a", "stop z"
            ]
        );
    }

    #[test]
    fn failed_start_stops_the_started_ones() {
        let (ops, log) = journal(&[("one", 1, false), ("two", 2, true), ("three", 3, false)]);
        let mut p = Pipeline::build(ops, &ParamValues::default()).unwrap();
        let err = p.start().unwrap_err();
        assert_eq!(err.to_string(), "operator two");
        assert_eq!(*log.borrow(), ["start one", "start two", "stop one"]);
        drop(p);
        assert_eq!(
            log.borrow().len(),
            3,
            "dropping a stopped pipeline stops nothing twice"
        );
    }

    #[test]
    fn dropping_a_started_pipeline_stops_it() {
        let (ops, log) = journal(&[("one", 1, false)]);
        let mut p = Pipeline::build(ops, &ParamValues::default()).unwrap();
        p.start().unwrap();
        drop(p);
        assert_eq!(*log.borrow(), ["start one", "stop one"]);
    }

    #[derive(Clone)]
    struct FailFlush;
    impl Handler for FailFlush {
        fn on_event(&mut self, _: &Schema, _: &mut Event) -> Flow {
            Flow::Continue
        }
        fn flush(&mut self) -> Result<(), HandlerError> {
            Err(HandlerError::Closed)
        }
    }

    #[test]
    fn flush_errors_surface() {
        let ops: Vec<Box<dyn Operator>> = vec![
            producer(vec![]),
            Box::new(Subscribe {
                name: "f",
                priority: 1,
                handler: FailFlush,
            }),
        ];
        let mut p = Pipeline::build(ops, &ParamValues::default()).unwrap();
        assert!(matches!(p.dispatch.flush(), Err(HandlerError::Closed)));
    }
}
