//! The single-table store. One customer is one partition (`pk = C#<id>`):
//!   `S`                     state: profile, enrollments, recent sends (JSON) and version `v`
//!   `D#<event id>`          dedupe marker, written with the state in one transaction
//!   `E#<occurred>#<id>`     the event as received
//!   `T#<at>#<n>`            timeline lines (decisions with reasons)
//! Consumed capacity is counted per call so the cost of each event can be reported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnConsumedCapacity, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use chrono::{Duration, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use super::classify;
use crate::domain::{CustomerId, CustomerState, EventId, TimelineEntry};
use crate::ports::{Commit, CommitOutcome, PortError, Store, Versioned};

/// Events, dedupe markers and timeline lines expire after this (DynamoDB TTL).
const HISTORY_DAYS: i64 = 400;
/// TransactWriteItems takes 100 items; leave room for state, dedupe and event.
const TIMELINE_IN_TRANSACTION: usize = 90;

/// Calls and capacity units consumed, as DynamoDB reports them (tenths of a unit).
#[derive(Debug, Default)]
pub struct Usage {
    pub calls: AtomicU64,
    pub read_tenths: AtomicU64,
    pub write_tenths: AtomicU64,
}

impl Usage {
    pub fn snapshot(&self) -> (u64, f64, f64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.read_tenths.load(Ordering::Relaxed) as f64 / 10.0,
            self.write_tenths.load(Ordering::Relaxed) as f64 / 10.0,
        )
    }
    fn record(&self, capacity: &[aws_sdk_dynamodb::types::ConsumedCapacity]) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        for c in capacity {
            let reads = c.read_capacity_units().unwrap_or(0.0);
            let writes = c.write_capacity_units().unwrap_or(0.0);
            // Some emulators report only the total: count it as the operation's kind.
            let (reads, writes) = if reads == 0.0 && writes == 0.0 { (0.0, c.capacity_units().unwrap_or(0.0)) } else { (reads, writes) };
            self.read_tenths.fetch_add((reads * 10.0).round() as u64, Ordering::Relaxed);
            self.write_tenths.fetch_add((writes * 10.0).round() as u64, Ordering::Relaxed);
        }
    }
    fn record_read(&self, capacity: Option<&aws_sdk_dynamodb::types::ConsumedCapacity>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = capacity {
            let units = c.read_capacity_units().or(c.capacity_units()).unwrap_or(0.0);
            self.read_tenths.fetch_add((units * 10.0).round() as u64, Ordering::Relaxed);
        }
    }
}

pub struct DynamoStore {
    client: Client,
    table: String,
    pub usage: Usage,
}

fn pk(customer: &CustomerId) -> AttributeValue {
    AttributeValue::S(format!("C#{customer}"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn ttl() -> AttributeValue {
    AttributeValue::N((Utc::now() + Duration::days(HISTORY_DAYS)).timestamp().to_string())
}

fn json_error(e: serde_json::Error) -> PortError {
    PortError::Fatal(format!("stored JSON does not decode: {e}"))
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> PortError {
    PortError::Fatal(format!("DynamoDB request: {e}"))
}

fn timeline_sort_key(entry: &TimelineEntry, json: &str, index: usize) -> String {
    let digest = hex::encode(&Sha256::digest(json.as_bytes())[..4]);
    format!("T#{}#{digest}{index:03}", entry.at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

impl DynamoStore {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table, usage: Usage::default() }
    }

    fn timeline_puts(&self, customer: &CustomerId, entries: &[TimelineEntry]) -> Result<Vec<Put>, PortError> {
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let json = serde_json::to_string(entry).map_err(json_error)?;
                Put::builder()
                    .table_name(&self.table)
                    .item("pk", pk(customer))
                    .item("sk", s(timeline_sort_key(entry, &json, i)))
                    .item("entry", s(json))
                    .item("ttl", ttl())
                    .build()
                    .map_err(build_error)
            })
            .collect()
    }

    async fn get(&self, customer: &CustomerId, sort_key: String, what: &str) -> Result<Option<HashMap<String, AttributeValue>>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk(customer))
            .key("sk", s(sort_key))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| classify(what, &e))?;
        self.usage.record_read(out.consumed_capacity());
        Ok(out.item)
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn load(&self, customer: &CustomerId) -> Result<Option<Versioned<CustomerState>>, PortError> {
        let Some(item) = self.get(customer, "S".into(), "load customer").await? else { return Ok(None) };
        let version = item.get("v").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok());
        let state = item.get("state").and_then(|v| v.as_s().ok());
        match (version, state) {
            (Some(version), Some(state)) => Ok(Some(Versioned { value: serde_json::from_str(state).map_err(json_error)?, version })),
            _ => Err(PortError::Fatal(format!("customer {customer}: state item lacks v or state"))),
        }
    }

    async fn event_seen(&self, customer: &CustomerId, event: &EventId) -> Result<bool, PortError> {
        Ok(self.get(customer, format!("D#{event}"), "check event id").await?.is_some())
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, PortError> {
        let version = commit.expected_version.unwrap_or(0) + 1;
        let state_json = serde_json::to_string(&commit.state).map_err(json_error)?;
        let mut state = Put::builder()
            .table_name(&self.table)
            .item("pk", pk(&commit.customer_id))
            .item("sk", s("S"))
            .item("v", AttributeValue::N(version.to_string()))
            .item("state", s(state_json));
        state = match commit.expected_version {
            None => state.condition_expression("attribute_not_exists(pk)"),
            Some(expected) => state.condition_expression("v = :expected").expression_attribute_values(":expected", AttributeValue::N(expected.to_string())),
        };
        let mut items = vec![TransactWriteItem::builder().put(state.build().map_err(build_error)?).build()];
        if let Some(event) = &commit.event {
            let occurred = event.occurred_at_utc().to_rfc3339_opts(SecondsFormat::Micros, true);
            let dedupe = Put::builder()
                .table_name(&self.table)
                .item("pk", pk(&commit.customer_id))
                .item("sk", s(format!("D#{}", event.id)))
                .item("ttl", ttl())
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_error)?;
            let body = Put::builder()
                .table_name(&self.table)
                .item("pk", pk(&commit.customer_id))
                .item("sk", s(format!("E#{occurred}#{}", event.id)))
                .item("type", s(event.event_type.as_str()))
                .item("event", s(serde_json::to_string(event).map_err(json_error)?))
                .item("ttl", ttl())
                .build()
                .map_err(build_error)?;
            items.push(TransactWriteItem::builder().put(dedupe).build());
            items.push(TransactWriteItem::builder().put(body).build());
        }
        let (now, later) = commit.timeline.split_at(commit.timeline.len().min(TIMELINE_IN_TRANSACTION));
        for put in self.timeline_puts(&commit.customer_id, now)? {
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.usage.record(out.consumed_capacity());
                if !later.is_empty() {
                    self.append_timeline(&commit.customer_id, later).await?;
                }
                Ok(CommitOutcome::Committed { version })
            }
            Err(error) => {
                self.usage.calls.fetch_add(1, Ordering::Relaxed);
                if let Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(cancel)) =
                    error.as_service_error()
                {
                    let failed = |i: usize| cancel.cancellation_reasons().get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
                    if commit.event.is_some() && failed(1) {
                        return Ok(CommitOutcome::DuplicateEvent);
                    }
                    // A failed version check, or a concurrent transaction on the same items.
                    return Ok(CommitOutcome::VersionConflict);
                }
                Err(classify("commit", &error))
            }
        }
    }

    async fn append_timeline(&self, customer: &CustomerId, entries: &[TimelineEntry]) -> Result<(), PortError> {
        for chunk in entries.chunks(25) {
            let requests = self
                .timeline_puts(customer, chunk)?
                .into_iter()
                .map(|put| {
                    aws_sdk_dynamodb::types::PutRequest::builder()
                        .set_item(Some(put.item().clone()))
                        .build()
                        .map(|p| aws_sdk_dynamodb::types::WriteRequest::builder().put_request(p).build())
                        .map_err(build_error)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut pending = HashMap::from([(self.table.clone(), requests)]);
            // Unprocessed items are retried a few times (throttling), then reported.
            for _ in 0..5 {
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| classify("append timeline", &e))?;
                self.usage.record(out.consumed_capacity());
                pending = out.unprocessed_items.unwrap_or_default();
                if pending.values().all(Vec::is_empty) {
                    break;
                }
            }
            if pending.values().any(|v| !v.is_empty()) {
                return Err(PortError::Retryable(format!("customer {customer}: timeline lines left unprocessed")));
            }
        }
        Ok(())
    }

    async fn timeline(&self, customer: &CustomerId) -> Result<Vec<TimelineEntry>, PortError> {
        let mut entries = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :t)")
                .expression_attribute_values(":pk", pk(customer))
                .expression_attribute_values(":t", s("T#"))
                .set_exclusive_start_key(start)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| classify("read timeline", &e))?;
            self.usage.record_read(out.consumed_capacity());
            for item in out.items() {
                if let Some(json) = item.get("entry").and_then(|v| v.as_s().ok()) {
                    entries.push(serde_json::from_str(json).map_err(json_error)?);
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(entries)
    }
}
