//! SDK service clients built when their adapter first calls AWS.
//!
//! Building one is about 0.6 M instructions of a cold start (each SDK crate parses its
//! endpoint partitions and compiles their regexes, then checks the HTTP client), and its code
//! is paged in for it. Most invocations use one or two of the four: an open at ingest, or a
//! delivery at feedback, reads and writes DynamoDB only. Each is built once, on first use, and
//! an invocation that needs all four pays what a cold start paid before (BENCHMARKS.md).

use std::sync::OnceLock;

use aws_config::SdkConfig;

pub(crate) struct ClientOnFirstUse<C> {
    sdk: SdkConfig,
    build: fn(&SdkConfig) -> C,
    client: OnceLock<C>,
}

impl<C> ClientOnFirstUse<C> {
    /// `build` is the client's `Client::new`; nothing is built until `get`.
    pub(crate) fn new(sdk: &SdkConfig, build: fn(&SdkConfig) -> C) -> Self {
        Self { sdk: sdk.clone(), build, client: OnceLock::new() }
    }

    pub(crate) fn get(&self) -> &C {
        self.client.get_or_init(|| (self.build)(&self.sdk))
    }

    #[cfg(test)]
    fn is_built(&self) -> bool {
        self.client.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::tls::tests::{counting_sdk, CountingClient};
    use crate::aws::{AwsAdapters, Settings};
    use std::sync::atomic::Ordering;

    fn settings() -> Settings {
        Settings {
            table_name: "t".into(),
            schedule_group: "g".into(),
            step_function_arn: "arn:aws:lambda:ap-northeast-1:000000000000:function:step".into(),
            scheduler_role_arn: "arn:aws:iam::000000000000:role/scheduler".into(),
            dead_letter_queue_arn: "arn:aws:sqs:ap-northeast-1:000000000000:dlq".into(),
            configuration_set: None,
            event_bus_name: "default".into(),
            unsubscribe_secret: vec![7; 32],
            public_base_url: "https://example.com".into(),
        }
    }

    /// The SDK checks its HTTP client in each `Client::new`, so the check count says how many
    /// service clients were built.
    #[tokio::test]
    async fn the_adapters_build_no_client_until_one_is_used_then_that_one_once() {
        let http = CountingClient::default();
        let sdk = counting_sdk(http.clone()).await;
        let built = || http.0.load(Ordering::SeqCst);
        let _adapters = AwsAdapters::new(&sdk, &settings());
        assert_eq!(built(), 0, "building the adapters builds no service client");

        let client = ClientOnFirstUse::new(&sdk, aws_sdk_dynamodb::Client::new);
        assert!(!client.is_built());
        let first: *const aws_sdk_dynamodb::Client = client.get();
        let again: *const aws_sdk_dynamodb::Client = client.get();
        assert_eq!(built(), 1, "the first use builds the client, the second reuses it");
        assert!(client.is_built() && std::ptr::eq(first, again));
    }
}
