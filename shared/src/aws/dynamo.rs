//! The single-table store. One customer is one partition (`pk = C#<id>`):
//!   `S`                     state: profile, enrollments, recent sends (`state_z1`: the JSON,
//!                           deflated with a preset dictionary; older items hold `state_z`,
//!                           deflated without one, or `state`, plain JSON) and version `v`
//!   `D#<event id>`          the event as received; its existence is the dedupe check
//!   `T#<at>#<order>`        the timeline lines one commit wrote (decisions with reasons)
//! Report counters live in their own partitions, `pk = STATS#<shard>`, `sk = <day>#<scope>`,
//! one number attribute per metric. The shard is chosen by customer, so concurrent commits
//! of different customers rarely touch the same counter item (a transaction conflict).
//! A commit is one TransactWriteItems of these three items plus one counter update per day and scope. Capacity units are counted per
//! call from item sizes with DynamoDB's billing rules (emulators do not report them all).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, Put, ReturnConsumedCapacity, TransactWriteItem, Update, WriteRequest};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::Client;
use chrono::{Duration, NaiveDate, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use super::client::ClientOnFirstUse;
use super::classify;
use crate::domain::{CustomerId, CustomerState, Deflated, EventId, TimelineEntry};
use crate::ports::{Commit, CommitOutcome, PortError, Store, Versioned};
use crate::stats::{Metric, StatCount, StatScope};

/// Counter partitions: enough to spread a busy day's writes, few enough to read a report cheaply.
const STAT_SHARDS: u8 = 8;

/// Events, dedupe markers and timeline lines expire after this (DynamoDB TTL).
const HISTORY_DAYS: i64 = 400;

/// Calls made and capacity units they bill, counted with DynamoDB's on-demand rules:
/// a strongly consistent read is 1 RCU per 4 KB (1 for a miss), a write 1 WCU per KB,
/// and transactional operations cost double.
#[derive(Debug, Default)]
pub struct Usage {
    pub calls: AtomicU64,
    pub read_units: AtomicU64,
    pub write_units: AtomicU64,
}

impl Usage {
    /// (calls, read units, write units)
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (self.calls.load(Ordering::Relaxed), self.read_units.load(Ordering::Relaxed), self.write_units.load(Ordering::Relaxed))
    }
    fn read(&self, bytes: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.read_units.fetch_add(bytes.div_ceil(4096).max(1) as u64, Ordering::Relaxed);
    }
    fn transact_write(&self, item_bytes: &[usize]) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let units: usize = item_bytes.iter().map(|b| 2 * b.div_ceil(1024).max(1)).sum();
        self.write_units.fetch_add(units as u64, Ordering::Relaxed);
    }
    fn write(&self, bytes: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.write_units.fetch_add(bytes.div_ceil(1024).max(1) as u64, Ordering::Relaxed);
    }
}

/// An item's billed size: attribute names plus values (strings and numbers as text).
fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    AttributeValue::N(n) => n.len().div_ceil(2) + 1,
                    _ => 1,
                }
        })
        .sum()
}

pub struct DynamoStore {
    client: ClientOnFirstUse<Client>,
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

/// `T#<at>#<order>`: time first; writes of one instant keep the order they were made in
/// (`order` is the commit's version, or `~` and the wall clock for lines appended after it).
fn timeline_sort_key(first: &TimelineEntry, order: &str) -> String {
    format!("T#{}#{order}", first.at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn stats_shard(customer: &CustomerId) -> u8 {
    Sha256::digest(customer.as_str().as_bytes())[0] % STAT_SHARDS
}

fn stats_sort_key(day: NaiveDate, scope: &StatScope) -> String {
    format!("{day}#{}", scope.encode())
}

impl DynamoStore {
    /// One ADD per counter item: the commit's increments grouped by day and scope.
    fn counter_updates(&self, customer: &CustomerId, stats: &[StatCount]) -> Result<Vec<(Update, usize)>, PortError> {
        let mut items: std::collections::BTreeMap<(NaiveDate, &StatScope), Vec<(String, i64)>> = std::collections::BTreeMap::new();
        for count in stats {
            let metrics = items.entry((count.day, &count.scope)).or_default();
            match metrics.iter_mut().find(|(name, _)| *name == count.metric.name()) {
                Some((_, value)) => *value += count.value,
                None => metrics.push((count.metric.name(), count.value)),
            }
        }
        let shard = stats_shard(customer);
        items
            .into_iter()
            .map(|((day, scope), metrics)| {
                let sort_key = stats_sort_key(day, scope);
                let mut size = sort_key.len() + 12;
                let mut update = Update::builder().table_name(&self.table).key("pk", s(format!("STATS#{shard}"))).key("sk", s(sort_key));
                let mut adds = Vec::new();
                for (i, (name, value)) in metrics.iter().enumerate() {
                    size += name.len() + 8;
                    adds.push(format!("#m{i} :v{i}"));
                    update = update.expression_attribute_names(format!("#m{i}"), name).expression_attribute_values(format!(":v{i}"), AttributeValue::N(value.to_string()));
                }
                let update = update.update_expression(format!("ADD {}", adds.join(", "))).build().map_err(build_error)?;
                Ok((update, size))
            })
            .collect()
    }

    pub fn new(sdk: &aws_config::SdkConfig, table: String) -> Self {
        Self { client: ClientOnFirstUse::new(sdk, Client::new), table, usage: Usage::default() }
    }

    /// All the lines of one write as one item (fewer items, fewer write units).
    fn timeline_put(&self, customer: &CustomerId, entries: &[TimelineEntry], order: &str) -> Result<Option<Put>, PortError> {
        let Some(first) = entries.first() else { return Ok(None) };
        let json = serde_json::to_string(entries).map_err(json_error)?;
        Put::builder()
            .table_name(&self.table)
            .item("pk", pk(customer))
            .item("sk", s(timeline_sort_key(first, order)))
            .item("entries", s(json))
            .item("ttl", ttl())
            .build()
            .map(Some)
            .map_err(build_error)
    }

    /// Every item a query matches, page by page; read units counted as DynamoDB bills them
    /// (eventually consistent reads cost half).
    async fn query_all(&self, query: QueryFluentBuilder, what: &str, consistent: bool) -> Result<Vec<HashMap<String, AttributeValue>>, PortError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = query.clone().set_exclusive_start_key(start).send().await.map_err(|e| classify(what, &e))?;
            let bytes: usize = out.items().iter().map(item_size).sum();
            self.usage.read(if consistent { bytes } else { bytes / 2 });
            start = out.last_evaluated_key;
            items.extend(out.items.unwrap_or_default());
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    async fn get(&self, customer: &CustomerId, sort_key: String, what: &str) -> Result<Option<HashMap<String, AttributeValue>>, PortError> {
        let out = self
            .client
            .get()
            .get_item()
            .table_name(&self.table)
            .key("pk", pk(customer))
            .key("sk", s(sort_key))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| classify(what, &e))?;
        self.usage.read(out.item.as_ref().map_or(0, item_size));
        Ok(out.item)
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn load(&self, customer: &CustomerId) -> Result<Option<Versioned<CustomerState>>, PortError> {
        let Some(item) = self.get(customer, "S".into(), "load customer").await? else { return Ok(None) };
        let version = item.get("v").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok());
        let deflated = [Deflated::Dictionary1, Deflated::Plain].into_iter().find_map(|how| Some((item.get(how.attribute())?.as_b().ok()?, how)));
        let state = match (deflated, item.get("state").and_then(|v| v.as_s().ok())) {
            (Some((deflated, how)), _) => CustomerState::from_deflated_json(deflated.as_ref(), how),
            (None, Some(json)) => serde_json::from_str(json),
            (None, None) => return Err(PortError::Fatal(format!("customer {customer}: state item lacks state_z1, state_z and state"))),
        };
        match version {
            Some(version) => Ok(Some(Versioned { value: state.map_err(json_error)?, version })),
            None => Err(PortError::Fatal(format!("customer {customer}: state item lacks v"))),
        }
    }

    async fn event_seen(&self, customer: &CustomerId, event: &EventId) -> Result<bool, PortError> {
        Ok(self.get(customer, format!("D#{event}"), "check event id").await?.is_some())
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<CommitOutcome, PortError> {
        let version = commit.expected_version.unwrap_or(0) + 1;
        let deflated = commit.state.to_deflated_json().map_err(json_error)?;
        let mut state = Put::builder()
            .table_name(&self.table)
            .item("pk", pk(&commit.customer_id))
            .item("sk", s("S"))
            .item("v", AttributeValue::N(version.to_string()))
            .item(Deflated::CURRENT.attribute(), AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(deflated)));
        state = match commit.expected_version {
            None => state.condition_expression("attribute_not_exists(pk)"),
            Some(expected) => state.condition_expression("v = :expected").expression_attribute_values(":expected", AttributeValue::N(expected.to_string())),
        };
        let mut puts = vec![state.build().map_err(build_error)?];
        if let Some(event) = &commit.event {
            puts.push(
                Put::builder()
                    .table_name(&self.table)
                    .item("pk", pk(&commit.customer_id))
                    .item("sk", s(format!("D#{}", event.id)))
                    .item("type", s(event.event_type.as_str()))
                    .item("occurred_at", s(event.occurred_at_utc().to_rfc3339_opts(SecondsFormat::Micros, true)))
                    .item("event", s(serde_json::to_string(event).map_err(json_error)?))
                    .item("ttl", ttl())
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(build_error)?,
            );
        }
        puts.extend(self.timeline_put(&commit.customer_id, &commit.timeline, &format!("{version:010}"))?);
        let mut sizes: Vec<usize> = puts.iter().map(|p| item_size(p.item())).collect();
        let mut items: Vec<TransactWriteItem> = puts.into_iter().map(|p| TransactWriteItem::builder().put(p).build()).collect();
        for (update, size) in self.counter_updates(&commit.customer_id, &commit.stats)? {
            sizes.push(size);
            items.push(TransactWriteItem::builder().update(update).build());
        }
        let result = self.client.get().transact_write_items().set_transact_items(Some(items)).send().await;
        self.usage.transact_write(&sizes);
        match result {
            Ok(_) => Ok(CommitOutcome::Committed { version }),
            Err(error) => {
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
        let Some(put) = self.timeline_put(customer, entries, &format!("~{}", Utc::now().timestamp_micros()))? else { return Ok(()) };
        let size = item_size(put.item());
        self.client
            .get()
            .put_item()
            .table_name(&self.table)
            .set_item(Some(put.item().clone()))
            .send()
            .await
            .map_err(|e| classify("append timeline", &e))?;
        self.usage.write(size);
        Ok(())
    }

    async fn timeline(&self, customer: &CustomerId) -> Result<Vec<TimelineEntry>, PortError> {
        let query = self
            .client
            .get()
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :t)")
            .expression_attribute_values(":pk", pk(customer))
            .expression_attribute_values(":t", s("T#"))
            .consistent_read(true);
        let mut entries: Vec<TimelineEntry> = Vec::new();
        for item in self.query_all(query, "read timeline", true).await? {
            if let Some(json) = item.get("entries").and_then(|v| v.as_s().ok()) {
                entries.extend(serde_json::from_str::<Vec<TimelineEntry>>(json).map_err(json_error)?);
            }
        }
        // Lines of one write can span instants; keep time order, write order on ties.
        entries.sort_by_key(|e| e.at);
        Ok(entries)
    }

    async fn stats(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<StatCount>, PortError> {
        let mut counts = Vec::new();
        for shard in 0..STAT_SHARDS {
            let query = self
                .client
                .get()
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(format!("STATS#{shard}")))
                .expression_attribute_values(":from", s(format!("{from}#")))
                .expression_attribute_values(":to", s(format!("{to}#~")));
            for item in self.query_all(query, "read stats", false).await? {
                let sort_key = item.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str).unwrap_or_default();
                let decoded = sort_key.split_once('#').and_then(|(day, scope)| Some((day.parse::<NaiveDate>().ok()?, StatScope::decode(scope)?)));
                let Some((day, scope)) = decoded else {
                    return Err(PortError::Fatal(format!("counter item {sort_key:?} does not decode")));
                };
                for (name, value) in &item {
                    let (Some(metric), Ok(n)) = (Metric::parse(name), value.as_n()) else { continue };
                    counts.push(StatCount::new(day, scope.clone(), metric, n.parse().unwrap_or(0)));
                }
            }
        }
        Ok(crate::stats::merge(counts))
    }

    async fn erase(&self, customer: &CustomerId) -> Result<(), PortError> {
        // Everything of the customer is in their partition: read the keys, delete in batches.
        let query = self
            .client
            .get()
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", pk(customer))
            .projection_expression("pk, sk")
            .consistent_read(true);
        let keys: Vec<AttributeValue> = self.query_all(query, "list customer items", true).await?.into_iter().filter_map(|mut item| item.remove("sk")).collect();
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|sk| {
                    let delete = DeleteRequest::builder().key("pk", pk(customer)).key("sk", sk.clone()).build().map_err(build_error)?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<Result<_, PortError>>()?;
            for _ in 0..8 {
                let out = self
                    .client
                    .get()
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| classify("erase customer", &e))?;
                self.usage.write(0);
                requests = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if !requests.is_empty() {
                return Err(PortError::Retryable(format!("customer {customer}: {} items left after erase retries", requests.len())));
            }
        }
        Ok(())
    }
}
