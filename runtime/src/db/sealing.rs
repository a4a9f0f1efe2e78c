//! Password fields at rest. With `M_ENCRYPTION_KEY` set, a value is stored as
//! `m1:<base64 of a 12-byte nonce and the ChaCha20-Poly1305 ciphertext>` (the key is the
//! SHA-256 of the setting, so any long random string works); without it — development only, the
//! server warns at startup — as `m0:<the value>`. The prefix says which, so a value stored before
//! a key was set is still read, and the next save encrypts it. Production without a key stores
//! no Password value at all: such a write is refused (503), naming the setting.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::Digest as _;

use super::DbError;

const ENCRYPTED: &str = "m1:";
const PLAIN: &str = "m0:";
const NONCE_BYTES: usize = 12;

/// Seals and opens Password values (cheap to clone).
#[derive(Clone, Default)]
pub struct Sealer {
    cipher: Option<ChaCha20Poly1305>,
    /// Without a key, values are refused instead of stored as they are (production).
    refuse_plain: bool,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("encrypts", &self.cipher.is_some()).finish()
    }
}

impl Sealer {
    /// Encrypting with a key derived from `secret`, or (None) storing values as they are.
    pub fn new(secret: Option<&str>) -> Sealer {
        let cipher = secret.map(|s| {
            let key: [u8; 32] = sha2::Sha256::digest(s.as_bytes()).into();
            ChaCha20Poly1305::new(&Key::from(key))
        });
        Sealer { cipher, refuse_plain: false }
    }

    /// As [`Sealer::new`], but without a key a value is refused rather than stored unencrypted.
    pub fn production(secret: Option<&str>) -> Sealer {
        Sealer { refuse_plain: true, ..Sealer::new(secret) }
    }

    /// Whether `value` is already a stored form (one that could not be opened is kept as it is;
    /// clients may not send a value that looks like one).
    pub fn is_stored_form(value: &str) -> bool {
        value.starts_with(ENCRYPTED) || value.starts_with(PLAIN)
    }

    /// The stored form of a value.
    pub fn seal(&self, value: &str) -> Result<String, DbError> {
        if Sealer::is_stored_form(value) {
            return Ok(value.to_string());
        }
        let Some(cipher) = &self.cipher else {
            if self.refuse_plain {
                return Err(DbError::Unavailable(
                    "Password values cannot be stored: production keeps them encrypted, and M_ENCRYPTION_KEY is not set"
                        .into(),
                ));
            }
            return Ok(format!("{PLAIN}{value}"));
        };
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, value.as_bytes())
            .map_err(|_| DbError::Other("cannot encrypt a Password value".into()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{ENCRYPTED}{}", BASE64.encode(bytes)))
    }

    /// The value of a stored form.
    pub fn open(&self, stored: &str) -> Result<String, DbError> {
        if let Some(plain) = stored.strip_prefix(PLAIN) {
            return Ok(plain.to_string());
        }
        let Some(encoded) = stored.strip_prefix(ENCRYPTED) else {
            // Written by something other than this server: taken as it is.
            return Ok(stored.to_string());
        };
        let Some(cipher) = &self.cipher else {
            return Err(DbError::Other("a Password value is encrypted, and M_ENCRYPTION_KEY is not set".into()));
        };
        let unreadable = || DbError::Other("a Password value cannot be decrypted with M_ENCRYPTION_KEY".into());
        let bytes = BASE64.decode(encoded).map_err(|_| unreadable())?;
        if bytes.len() < NONCE_BYTES {
            return Err(unreadable());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| unreadable())?;
        let plain = cipher.decrypt(&Nonce::from(nonce), sealed).map_err(|_| unreadable())?;
        String::from_utf8(plain).map_err(|_| unreadable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_only_the_key_opens_them() {
        let sealer = Sealer::new(Some("a key of enough length for a test"));
        let stored = sealer.seal("s3cret").unwrap();
        assert!(stored.starts_with("m1:") && !stored.contains("s3cret"), "{stored}");
        assert_ne!(stored, sealer.seal("s3cret").unwrap(), "a fresh nonce each time");
        assert_eq!(sealer.open(&stored).unwrap(), "s3cret");
        assert!(Sealer::new(Some("another key of enough length!")).open(&stored).is_err());
        assert!(Sealer::new(None).open(&stored).is_err());
        // Without a key values are kept as they are, and read with or without one.
        let plain = Sealer::new(None).seal("s3cret").unwrap();
        assert_eq!(plain, "m0:s3cret");
        assert_eq!(sealer.open(&plain).unwrap(), "s3cret");
        assert!(sealer.open("m1:not base64").unwrap_err().to_string().contains("decrypted"));
        // Production without a key stores nothing unencrypted, and still reads what is stored.
        let refusing = Sealer::production(None);
        assert!(refusing.seal("s3cret").unwrap_err().to_string().contains("M_ENCRYPTION_KEY"));
        assert_eq!(refusing.open(&plain).unwrap(), "s3cret");
        assert!(Sealer::production(Some("a key of enough length for a test")).seal("x").unwrap().starts_with("m1:"));
    }
}
