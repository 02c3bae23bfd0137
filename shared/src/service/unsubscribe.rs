//! One-click unsubscribe (RFC 8058) and the preference page.
//!
//! A token is `<customer id, base64url>.<HMAC-SHA256 of it, base64url>`: it cannot be forged
//! or edited to name another customer without the secret, and is checked in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::CustomerId;

type HmacSha256 = Hmac<Sha256>;

/// The key tokens are signed with, and where `/u/<token>` is served.
#[derive(Clone)]
pub struct UnsubscribeLinks {
    secret: Vec<u8>,
    base_url: String,
}

impl std::fmt::Debug for UnsubscribeLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UnsubscribeLinks({})", self.base_url)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the unsubscribe link is malformed")]
    Malformed,
    #[error("the unsubscribe link's signature does not match")]
    BadSignature,
}

const PURPOSE: &[u8] = b"aftercare-unsubscribe-v1\0";
const ACTIVATION: &[u8] = b"aftercare-activate-v1\0";

impl UnsubscribeLinks {
    /// `secret` must be at least 32 bytes (e.g. 64 hex characters from `openssl rand -hex 32`).
    pub fn new(secret: &[u8], base_url: &str) -> Result<UnsubscribeLinks, String> {
        if secret.len() < 32 {
            return Err(format!("the unsubscribe secret must be at least 32 bytes, got {}", secret.len()));
        }
        Ok(UnsubscribeLinks { secret: secret.to_vec(), base_url: base_url.trim_end_matches('/').to_owned() })
    }

    /// A fresh random secret: for the simulator and tests, where links are never followed later.
    pub fn ephemeral(base_url: &str) -> UnsubscribeLinks {
        let mut secret = vec![0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            // No randomness: fall back to the clock; these links never leave the process.
            secret = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default().to_le_bytes().repeat(4);
        }
        UnsubscribeLinks { secret, base_url: base_url.trim_end_matches('/').to_owned() }
    }

    fn mac(&self) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(PURPOSE);
        mac
    }

    pub fn token(&self, customer: &CustomerId) -> String {
        let mut mac = self.mac();
        mac.update(customer.as_str().as_bytes());
        format!("{}.{}", URL_SAFE_NO_PAD.encode(customer.as_str()), URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// A magic link for a guest to activate an account: `<store>/account/activate?token=…`.
    /// The storefront checks it with the same secret: HMAC-SHA256 over
    /// `"aftercare-activate-v1\0" + customer id + "\0" + email`, base64url, after the `.`.
    pub fn activation_url(&self, store_base_url: &str, customer: &CustomerId, email: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(ACTIVATION);
        mac.update(customer.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(email.as_bytes());
        let payload = URL_SAFE_NO_PAD.encode(format!("{customer}\0{email}"));
        format!("{}/account/activate?token={payload}.{}", store_base_url.trim_end_matches('/'), URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    pub fn url(&self, customer: &CustomerId) -> String {
        format!("{}/u/{}", self.base_url, self.token(customer))
    }

    /// The customer a token was made for; a forged or edited token is refused.
    pub fn verify(&self, token: &str) -> Result<CustomerId, TokenError> {
        let (id, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let id = URL_SAFE_NO_PAD.decode(id).map_err(|_| TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(&id);
        mac.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        let id = String::from_utf8(id).map_err(|_| TokenError::Malformed)?;
        CustomerId::parse(&id).map_err(|_| TokenError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> UnsubscribeLinks {
        UnsubscribeLinks::new(&[7u8; 32], "https://api.example.com/").unwrap()
    }

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let c1 = CustomerId::parse("cust-1").unwrap();
        let token = links().token(&c1);
        assert_eq!(links().verify(&token), Ok(c1.clone()));
        assert_eq!(links().url(&c1), format!("https://api.example.com/u/{token}"));

        // Another customer's id with this signature.
        let (_, signature) = token.split_once('.').unwrap();
        let forged = format!("{}.{signature}", URL_SAFE_NO_PAD.encode("cust-2"));
        assert_eq!(links().verify(&forged), Err(TokenError::BadSignature));
        // A flipped signature character, a missing part, junk.
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(links().verify(&String::from_utf8(flipped).unwrap()), Err(TokenError::BadSignature));
        assert_eq!(links().verify("nodot"), Err(TokenError::Malformed));
        assert_eq!(links().verify("!!.??"), Err(TokenError::Malformed));
        // Another secret does not accept it.
        let other = UnsubscribeLinks::new(&[8u8; 32], "https://api.example.com").unwrap();
        assert_eq!(other.verify(&token), Err(TokenError::BadSignature));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(UnsubscribeLinks::new(b"short", "https://x").unwrap_err().contains("32 bytes"));
    }
}

#[cfg(test)]
mod activation_tests {
    use super::*;

    #[test]
    fn activation_links_are_signed_for_one_customer_and_address() {
        let links = UnsubscribeLinks::new(&[7u8; 32], "https://api.example.com").unwrap();
        let c1 = CustomerId::parse("c1").unwrap();
        let url = links.activation_url("https://shop.example.com/", &c1, "c1@example.jp");
        assert!(url.starts_with("https://shop.example.com/account/activate?token="), "{url}");
        assert_ne!(url, links.activation_url("https://shop.example.com", &c1, "other@example.jp"));
        assert_ne!(url, links.activation_url("https://shop.example.com", &CustomerId::parse("c2").unwrap(), "c1@example.jp"));
        // It is not an unsubscribe token: a different purpose is signed.
        let token = url.split("token=").nth(1).unwrap();
        assert!(links.verify(token).is_err());
    }
}
