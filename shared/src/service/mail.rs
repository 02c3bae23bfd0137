//! From a rendered template to an outgoing message: sender, headers, SES tags.

use std::borrow::Cow;

use base64::Engine as _;

use crate::engine::SendIntent;
use crate::flow::StorePolicy;
use crate::ports::OutgoingEmail;
use crate::render::RenderedEmail;

/// Header carrying the customer id when it cannot travel as an SES tag value.
pub const CUSTOMER_HEADER: &str = "X-Aftercare-Customer";

/// SES tag values allow only ASCII letters, digits, `_` and `-`, up to 256 characters.
fn is_tag_safe(value: &str) -> bool {
    !value.is_empty() && value.len() <= 256 && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The customer id as SES tags: `customer_id` when it fits the tag alphabet, else `customer_id_hex`.
pub fn customer_tag(id: &str) -> Option<(&'static str, Cow<'_, str>)> {
    if is_tag_safe(id) {
        Some(("customer_id", Cow::Borrowed(id)))
    } else if id.len() <= 128 {
        Some(("customer_id_hex", Cow::Owned(hex::encode(id.as_bytes()))))
    } else {
        None
    }
}

/// `"Name" <address>`, the name as an RFC 2047 encoded word when it is not plain ASCII.
pub fn mailbox(name: &str, address: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    if name.is_empty() {
        return address.to_owned();
    }
    if name.is_ascii() {
        format!("\"{}\" <{address}>", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        format!("=?UTF-8?B?{}?= <{address}>", base64::engine::general_purpose::STANDARD.encode(name.as_bytes()))
    }
}

/// RFC 8058 one-click unsubscribe headers (what Gmail and Yahoo require of bulk senders).
pub fn unsubscribe_headers(url: &str, mailto: &str) -> [(&'static str, Cow<'static, str>); 2] {
    [
        ("List-Unsubscribe", Cow::Owned(format!("<{url}>, <mailto:{mailto}?subject=unsubscribe>"))),
        ("List-Unsubscribe-Post", Cow::Borrowed("List-Unsubscribe=One-Click")),
    ]
}

pub(crate) fn outgoing<'a>(store: &'a StorePolicy, send: &'a SendIntent, rendered: &'a RenderedEmail, unsubscribe_url: Option<&str>) -> OutgoingEmail<'a> {
    let customer_id = send.profile.id.as_str();
    let mut tags = Vec::with_capacity(7);
    tags.extend([
        ("flow", Cow::Borrowed(send.flow.as_str())),
        ("step", Cow::Borrowed(send.step_id.as_str())),
        ("template", Cow::Borrowed(send.template.as_str())),
        ("category", Cow::Borrowed(send.category.as_str())),
        ("enrollment", Cow::Owned(crate::engine::enrollment_tag(&send.enrollment_id))),
    ]);
    if let Some(variant) = send.enrollment.variant.as_ref().filter(|v| is_tag_safe(v)) {
        tags.push(("variant", Cow::Borrowed(variant.as_str())));
    }
    tags.extend(customer_tag(customer_id));
    let mut headers = Vec::with_capacity(3);
    if let Some(url) = unsubscribe_url {
        let mailto = store.sender.reply_to.as_ref().unwrap_or(&store.sender.address);
        headers.extend(unsubscribe_headers(url, mailto.as_str()));
    }
    if customer_id.is_ascii() && !customer_id.chars().any(char::is_control) {
        headers.push((CUSTOMER_HEADER, Cow::Borrowed(customer_id)));
    }
    OutgoingEmail {
        from_name: Cow::Borrowed(&store.sender.name),
        from_address: Cow::Borrowed(store.sender.address.as_str()),
        to: Cow::Borrowed(send.to.as_str()),
        reply_to: store.sender.reply_to.as_ref().map(|address| Cow::Borrowed(address.as_str())),
        subject: Cow::Borrowed(&rendered.subject),
        html: Cow::Borrowed(&rendered.html),
        text: Cow::Borrowed(&rendered.text),
        headers,
        tags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_ids_become_valid_tags() {
        assert_eq!(customer_tag("cust-1"), Some(("customer_id", "cust-1".into())));
        assert_eq!(customer_tag("a@b.jp"), Some(("customer_id_hex", "6140622e6a70".into())));
        assert_eq!(customer_tag(&"顧".repeat(100)), None);
    }

    #[test]
    fn mailboxes_are_quoted_or_encoded() {
        assert_eq!(mailbox("Coffee \"Co\"", "a@example.com"), "\"Coffee \\\"Co\\\"\" <a@example.com>");
        assert_eq!(mailbox("珈琲", "a@example.com"), "=?UTF-8?B?54+I55Cy?= <a@example.com>");
        assert_eq!(mailbox("Evil\r\nBcc: x", "a@example.com"), "\"EvilBcc: x\" <a@example.com>");
    }
}
