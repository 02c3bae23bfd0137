//! moto's server on loopback, as `bash infra/test.sh` starts it: the SDK pointed at it, and the
//! resources template.yaml would create (table, schedule group, verified sender domain).
//! Shared by the AWS tests and the invocation bench (`#[path]`: each is its own crate).

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};

/// `AWS_ENDPOINT_URL` when it points at this machine; never a real account.
pub fn loopback_endpoint() -> Result<String, String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").map_err(|_| "AWS_ENDPOINT_URL is not set: run with `bash infra/test.sh`, which starts moto on loopback".to_owned())?;
    if endpoint.contains("127.0.0.1") || endpoint.contains("localhost") {
        Ok(endpoint)
    } else {
        Err(format!("refusing to run against a non-local endpoint {endpoint}"))
    }
}

/// The SDK as the Lambdas configure it (their HTTP client, checked once), pointed at moto.
pub async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(endpoint).region("ap-northeast-1");
    aftercare_core::aws::tls::with_https_client(loader, aftercare_core::aws::tls::TrustedRoots::Amazon).expect("the Lambdas' HTTP client").load().await
}

/// The single table of DESIGN.md: `pk` and `sk`, on demand.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    let attribute = |n: &str| AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build().expect("attribute");
    let key = |n: &str, t| KeySchemaElement::builder().attribute_name(n).key_type(t).build().expect("key");
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .expect("create table");
}

/// The table, the schedule group and the sender domain a deployment has.
pub async fn create_stack(sdk: &aws_config::SdkConfig, table: &str, schedule_group: &str) {
    create_table(&aws_sdk_dynamodb::Client::new(sdk), table).await;
    aws_sdk_scheduler::Client::new(sdk).create_schedule_group().name(schedule_group).send().await.expect("create schedule group");
    aws_sdk_sesv2::Client::new(sdk).create_email_identity().email_identity("example.com").send().await.expect("verify sender domain in moto");
}
