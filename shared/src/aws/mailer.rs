//! SES v2 `SendEmail` with Simple content: subject, HTML and text, custom headers,
//! message tags (what the feedback function needs) and the configuration set.

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageHeader, MessageTag};
use aws_sdk_sesv2::Client;

use super::client::ClientOnFirstUse;
use super::classify;
use crate::ports::{Mailer, OutgoingEmail, PortError};
use crate::service::mail::mailbox;

pub struct SesMailer {
    client: ClientOnFirstUse<Client>,
    configuration_set: Option<String>,
}

impl SesMailer {
    pub fn new(sdk: &aws_config::SdkConfig, configuration_set: Option<String>) -> Self {
        Self { client: ClientOnFirstUse::new(sdk, Client::new), configuration_set }
    }
}

fn utf8(data: &str) -> Result<Content, PortError> {
    Content::builder().data(data).charset("UTF-8").build().map_err(|e| PortError::Fatal(format!("SES content: {e}")))
}

/// The SES request for one email (pure, so its headers and tags can be checked in unit tests).
pub fn email_content(email: &OutgoingEmail) -> Result<(EmailContent, Vec<MessageTag>), PortError> {
    let mut message = Message::builder().subject(utf8(&email.subject)?).body(Body::builder().html(utf8(&email.html)?).text(utf8(&email.text)?).build());
    for (name, value) in &email.headers {
        message = message.headers(MessageHeader::builder().name(*name).value(value.as_ref()).build().map_err(|e| PortError::Fatal(format!("SES header {name}: {e}")))?);
    }
    let tags = email
        .tags
        .iter()
        .map(|(name, value)| MessageTag::builder().name(*name).value(value.as_ref()).build().map_err(|e| PortError::Fatal(format!("SES tag {name}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((EmailContent::builder().simple(message.build()).build(), tags))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &OutgoingEmail<'_>) -> Result<String, PortError> {
        let (content, tags) = email_content(email)?;
        let out = self
            .client
            .get()
            .send_email()
            .from_email_address(mailbox(&email.from_name, &email.from_address))
            .destination(Destination::builder().to_addresses(email.to.as_ref()).build())
            .set_reply_to_addresses(email.reply_to.as_deref().map(|r| vec![r.to_owned()]))
            .content(content)
            .set_email_tags(Some(tags))
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(|e| classify("SES SendEmail", &e))?;
        out.message_id.ok_or_else(|| PortError::Fatal("SES returned no message id".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_tags_reach_the_request() {
        let email = OutgoingEmail {
            from_name: "Shop".into(),
            from_address: "hello@example.com".into(),
            to: "c1@example.jp".into(),
            reply_to: None,
            subject: "件名".into(),
            html: "<p>x</p>".into(),
            text: "x".into(),
            headers: vec![("X-Aftercare-Customer".into(), "c1".into())],
            tags: vec![("customer_id".into(), "c1".into()), ("flow".into(), "order_confirmation".into())],
        };
        let (content, tags) = email_content(&email).unwrap();
        let simple = content.simple().unwrap();
        assert_eq!(simple.subject().unwrap().data(), "件名");
        assert_eq!(simple.subject().unwrap().charset(), Some("UTF-8"));
        assert_eq!(simple.body().unwrap().text().unwrap().data(), "x");
        assert_eq!(simple.headers().iter().map(|h| (h.name(), h.value())).collect::<Vec<_>>(), vec![("X-Aftercare-Customer", "c1")]);
        assert_eq!(tags.iter().map(|t| (t.name(), t.value())).collect::<Vec<_>>(), vec![("customer_id", "c1"), ("flow", "order_confirmation")]);
    }
}
