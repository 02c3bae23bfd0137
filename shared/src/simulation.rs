//! The virtual-clock driver behind `aftercare simulate` and the scenario tests: the real
//! services on in-memory ports, every due step fired at its own time.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::Event;
use crate::flow::FlowSet;
use crate::memory::{ManualClock, MemoryMailer, MemoryPublisher, MemoryScheduler, MemoryStore};
use crate::service::{App, Ports, SendReport, ServiceError};

pub struct Simulation {
    pub app: App,
    pub store: Arc<MemoryStore>,
    pub scheduler: Arc<MemoryScheduler>,
    pub mailer: Arc<MemoryMailer>,
    clock: Arc<ManualClock>,
}

impl Simulation {
    pub fn new(flows: FlowSet, start: DateTime<Utc>) -> anyhow::Result<Simulation> {
        let store = Arc::new(MemoryStore::new());
        let mut simulation = Simulation::with_store(flows, start, store.clone())?;
        simulation.store = store;
        Ok(simulation)
    }

    /// On another store (the cost model's metered one); `store` is then a fresh, unused one.
    pub fn with_store(flows: FlowSet, start: DateTime<Utc>, store: Arc<dyn crate::ports::Store>) -> anyhow::Result<Simulation> {
        let scheduler = Arc::new(MemoryScheduler::new());
        let mailer = Arc::new(MemoryMailer::discarding());
        let clock = Arc::new(ManualClock::new(start));
        let ports = Ports { store, scheduler: scheduler.clone(), mailer: mailer.clone(), publisher: Arc::new(MemoryPublisher::new()), clock: clock.clone() };
        Ok(Simulation { app: App::new(flows, ports)?.subjects_only(), store: Arc::new(MemoryStore::new()), scheduler, mailer, clock })
    }

    /// Fires what is due up to the event's time, then ingests the event at that time.
    /// Sends and skips come back in time order.
    pub async fn ingest(&self, value: &Value) -> Result<Vec<SendReport>, ServiceError> {
        let event = Event::parse(value).map_err(|error| ServiceError::Invalid { index: None, error })?;
        let at = event.occurred_at_utc();
        let mut reports = self.run_until(at).await?;
        self.clock.set(at.max(self.clock_now()));
        let report = self.app.ingest_json(std::slice::from_ref(value)).await?;
        reports.extend(report.reports);
        Ok(reports)
    }

    /// Runs every step due at or before `until`, each at its own due time.
    pub async fn run_until(&self, until: DateTime<Utc>) -> Result<Vec<SendReport>, ServiceError> {
        let mut reports = Vec::new();
        while let Some(step) = self.scheduler.take_next_due(until) {
            self.clock.set(step.at);
            self.app.run_step(&step.due, &mut reports).await?;
        }
        Ok(reports)
    }

    fn clock_now(&self) -> DateTime<Utc> {
        use crate::ports::Clock;
        self.clock.now()
    }
}
