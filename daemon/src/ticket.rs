//! Tickets: ringdrop's own compact, versioned ticket and iroh-blobs' `BlobTicket`.
//!
//! A ringdrop ticket is `rdrop` followed by the lowercase, unpadded base32 of
//! a postcard-encoded [`Wire`] value. Decoding never panics and never
//! allocates more than a few times the (bounded) input.

use std::{fmt, net::SocketAddr, str::FromStr};

use iroh::{EndpointAddr, EndpointId, RelayUrl};
use iroh_blobs::{ticket::BlobTicket, BlobFormat, Hash, HashAndFormat};
use serde::{Deserialize, Serialize};

/// Prefix of every ringdrop ticket.
pub const PREFIX: &str = "rdrop";
/// Longest ticket we accept, in characters. Real tickets are a few hundred.
pub const MAX_TICKET_LEN: usize = 8 * 1024;
/// Longest display name a ticket may carry, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Most direct addresses a ticket may carry.
pub const MAX_ADDRS: usize = 64;

/// Errors reading a ticket; all are the user's input, so all say what to do.
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is empty: paste the whole ticket printed by `ringdropctl share`")]
    Empty,
    #[error("the ticket is {0} characters long, more than the {MAX_TICKET_LEN} a ticket can have: check that you pasted only the ticket")]
    TooLong(usize),
    #[error("this is not a ringdrop ticket (rdrop...) or an iroh blob ticket (blob...)")]
    UnknownKind,
    #[error("the ticket is damaged (not valid base32): was it cut or changed while copying?")]
    Encoding,
    #[error("the ticket is damaged or truncated ({0}): copy it again")]
    Decode(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the ticket was made by a newer ringdrop (format version {0}): upgrade ringdrop to fetch it")]
    UnsupportedVersion(u64),
    #[error("the ticket names an invalid endpoint id")]
    EndpointId,
    #[error("the ticket carries an invalid relay URL: {0}")]
    RelayUrl(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the ticket's {0} is too long")]
    Oversized(&'static str),
}

/// Which kind of string a ticket was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketKind {
    Ringdrop,
    Blob,
}

/// A decoded ticket of either kind: whom to ask, for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub kind: TicketKind,
    pub addr: EndpointAddr,
    pub content: HashAndFormat,
    pub name: Option<String>,
}

#[derive(Serialize, Deserialize)]
enum Wire {
    V1(WireV1),
}

#[derive(Serialize, Deserialize)]
struct WireV1 {
    endpoint: [u8; 32],
    relay: Option<String>,
    addrs: Vec<SocketAddr>,
    hash: [u8; 32],
    raw: bool,
    name: Option<String>,
}

impl Ticket {
    /// A ringdrop ticket for a collection.
    pub fn new(addr: EndpointAddr, hash: Hash, name: Option<String>) -> Self {
        Self {
            kind: TicketKind::Ringdrop,
            addr,
            content: HashAndFormat::hash_seq(hash),
            name,
        }
    }

    /// The same content as an iroh-blobs ticket (what sendme reads).
    pub fn to_blob_ticket(&self) -> BlobTicket {
        BlobTicket::new(self.addr.clone(), self.content.hash, self.content.format)
    }

    /// The endpoint that serves the content.
    pub fn provider(&self) -> EndpointId {
        self.addr.id
    }

    fn encode_ringdrop(&self) -> String {
        let wire = Wire::V1(WireV1 {
            endpoint: *self.addr.id.as_bytes(),
            relay: self.addr.relay_urls().next().map(|u| u.to_string()),
            addrs: self.addr.ip_addrs().copied().take(MAX_ADDRS).collect(),
            hash: *self.content.hash.as_bytes(),
            raw: self.content.format == BlobFormat::Raw,
            // The name is only a label: cut it rather than print a ticket
            // that no ringdrop accepts.
            name: self.name.as_deref().map(|n| label(n).to_string()),
        });
        // Serialising plain data into a Vec cannot fail.
        let bytes = postcard::to_stdvec(&wire).unwrap_or_default();
        format!("{PREFIX}{}", BASE32.encode(&bytes).to_ascii_lowercase())
    }

    fn decode_ringdrop(body: &str) -> Result<Self, TicketError> {
        let bytes = BASE32
            .decode(body.as_bytes())
            .map_err(|_| TicketError::Encoding)?;
        let (version, wire) = decode_versioned(&bytes)?;
        let Wire::V1(v1) = wire;
        debug_assert_eq!(version, 1);
        let id = EndpointId::from_bytes(&v1.endpoint).map_err(|_| TicketError::EndpointId)?;
        let mut addr = EndpointAddr::new(id);
        if let Some(relay) = v1.relay {
            let url = RelayUrl::from_str(&relay).map_err(|e| TicketError::RelayUrl(e.into()))?;
            addr = addr.with_relay_url(url);
        }
        if v1.addrs.len() > MAX_ADDRS {
            return Err(TicketError::Oversized("address list"));
        }
        for a in v1.addrs {
            addr = addr.with_ip_addr(a);
        }
        if v1.name.as_ref().is_some_and(|n| n.len() > MAX_NAME_LEN) {
            return Err(TicketError::Oversized("name"));
        }
        let format = if v1.raw {
            BlobFormat::Raw
        } else {
            BlobFormat::HashSeq
        };
        Ok(Self {
            kind: TicketKind::Ringdrop,
            addr,
            content: HashAndFormat::new(Hash::from(v1.hash), format),
            name: v1.name,
        })
    }
}

/// `name` cut to at most [`MAX_NAME_LEN`] bytes, on a character boundary.
fn label(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Reads the variant index first so a ticket from a newer ringdrop gets a
/// clear "upgrade" message instead of a decode error.
fn decode_versioned(bytes: &[u8]) -> Result<(u32, Wire), TicketError> {
    let (variant, _) =
        postcard::take_from_bytes::<u32>(bytes).map_err(|e| TicketError::Decode(e.into()))?;
    if variant != 0 {
        // Widened: the largest variant index is a newer version too.
        return Err(TicketError::UnsupportedVersion(u64::from(variant) + 1));
    }
    let wire: Wire = postcard::from_bytes(bytes).map_err(|e| TicketError::Decode(e.into()))?;
    Ok((variant + 1, wire))
}

const BASE32: data_encoding::Encoding = data_encoding::BASE32_NOPAD_NOCASE;

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TicketKind::Ringdrop => f.write_str(&self.encode_ringdrop()),
            TicketKind::Blob => write!(f, "{}", self.to_blob_ticket()),
        }
    }
}

impl FromStr for Ticket {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TicketError::Empty);
        }
        if s.len() > MAX_TICKET_LEN {
            return Err(TicketError::TooLong(s.len()));
        }
        let lower = s.to_ascii_lowercase();
        if let Some(body) = lower.strip_prefix(PREFIX) {
            return Self::decode_ringdrop(body);
        }
        if lower.starts_with("blob") {
            let t = BlobTicket::from_str(s).map_err(|e| TicketError::Decode(e.into()))?;
            let (addr, hash, format) = t.into_parts();
            return Ok(Self {
                kind: TicketKind::Blob,
                addr,
                content: HashAndFormat::new(hash, format),
                name: None,
            });
        }
        Err(TicketError::UnknownKind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ticket {
        let id = iroh::SecretKey::from_bytes(&[7u8; 32]).public();
        let addr = EndpointAddr::new(id).with_ip_addr("127.0.0.1:4242".parse().unwrap());
        Ticket::new(addr, Hash::new(b"hello"), Some("hello.txt".into()))
    }

    #[test]
    fn round_trip_both_kinds() {
        let t = sample();
        let s = t.to_string();
        assert!(s.starts_with("rdrop"));
        assert_eq!(s.parse::<Ticket>().unwrap(), t);
        let blob = t.to_blob_ticket().to_string();
        let back: Ticket = blob.parse().unwrap();
        assert_eq!(back.kind, TicketKind::Blob);
        assert_eq!(back.content, t.content);
        assert_eq!(back.addr, t.addr);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let s = sample().to_string();
        for n in 0..s.len() {
            assert!(
                s[..n].parse::<Ticket>().is_err(),
                "prefix of {n} chars parsed"
            );
        }
    }

    #[test]
    fn garbage_is_rejected() {
        for g in [
            "",
            "hello",
            "rdrop!!!!",
            "blobxyz",
            "rdropaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(g.parse::<Ticket>().is_err(), "{g:?} parsed");
        }
        let long = format!("rdrop{}", "a".repeat(MAX_TICKET_LEN));
        assert!(matches!(
            long.parse::<Ticket>(),
            Err(TicketError::TooLong(_))
        ));
    }

    mod props {
        use std::net::{SocketAddr, SocketAddrV6};

        use proptest::prelude::*;

        use super::*;

        /// Socket addresses as a ticket carries them: serde keeps only the
        /// IP and port of a V6 address (flow info and scope id are lost).
        fn socket_addr() -> impl Strategy<Value = SocketAddr> {
            any::<SocketAddr>().prop_map(|a| match a {
                SocketAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0)),
                v4 => v4,
            })
        }

        fn relay_url() -> impl Strategy<Value = RelayUrl> {
            (
                "[a-z][a-z0-9-]{0,20}",
                "(\\.[a-z]{2,6}){1,3}",
                "(:[1-9][0-9]{0,3})?",
            )
                .prop_map(|(host, tld, port)| format!("https://{host}{tld}{port}/"))
                .prop_map(|s| s.parse().expect("valid relay url"))
        }

        prop_compose! {
            fn ticket()(
                secret in any::<[u8; 32]>(),
                relay in proptest::option::of(relay_url()),
                addrs in proptest::collection::vec(socket_addr(), 0..=MAX_ADDRS),
                hash in any::<[u8; 32]>(),
                raw in any::<bool>(),
                name in proptest::option::of("\\PC{0,64}"),
            ) -> Ticket {
                let id = iroh::SecretKey::from_bytes(&secret).public();
                let mut addr = EndpointAddr::new(id);
                if let Some(url) = relay {
                    addr = addr.with_relay_url(url);
                }
                for a in addrs {
                    addr = addr.with_ip_addr(a);
                }
                let format = if raw { BlobFormat::Raw } else { BlobFormat::HashSeq };
                Ticket {
                    kind: TicketKind::Ringdrop,
                    addr,
                    content: HashAndFormat::new(Hash::from_bytes(hash), format),
                    name,
                }
            }
        }

        /// A ticket that decodes re-encodes to itself.
        fn assert_stable(t: &Ticket) {
            let again = t.to_string();
            let back: Ticket = again.parse().expect("re-encoded ticket decodes");
            assert_eq!(&back, t);
        }

        proptest! {
            #![proptest_config(crate::proptest_config())]

            #[test]
            fn round_trips(t in ticket()) {
                let s = t.to_string();
                prop_assert!(s.len() <= MAX_TICKET_LEN);
                prop_assert_eq!(s.parse::<Ticket>().unwrap(), t.clone());
                prop_assert_eq!(s.to_uppercase().parse::<Ticket>().unwrap(), t.clone());
                let blob: Ticket = t.to_blob_ticket().to_string().parse().unwrap();
                prop_assert_eq!(blob.kind, TicketKind::Blob);
                prop_assert_eq!(blob.content, t.content);
                prop_assert_eq!(blob.addr, t.addr);
            }

            #[test]
            fn long_names_are_cut_not_refused(t in ticket(), name in "[a-z\u{e9}\u{1f600}]{0,1100}") {
                let t = Ticket { name: Some(name.clone()), ..t };
                let back = t.to_string().parse::<Ticket>().unwrap();
                let got = back.name.clone().unwrap();
                prop_assert!(got.len() <= MAX_NAME_LEN);
                prop_assert!(name.starts_with(&got));
                prop_assert!(name.len() <= MAX_NAME_LEN || got.len() > MAX_NAME_LEN - 4);
                prop_assert_eq!(back, Ticket { name: Some(got), ..t });
            }

            #[test]
            fn arbitrary_text_is_an_error_or_stable(s in "\\PC{0,200}") {
                if let Ok(t) = s.parse::<Ticket>() {
                    assert_stable(&t);
                }
            }

            #[test]
            fn text_of_neither_kind_is_refused(s in "[^rRbB\\s]\\PC{0,100}") {
                prop_assert!(matches!(s.parse::<Ticket>(), Err(TicketError::UnknownKind)));
            }

            #[test]
            fn arbitrary_bodies_are_an_error_or_stable(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let s = format!("{PREFIX}{}", BASE32.encode(&bytes));
                if let Ok(t) = s.parse::<Ticket>() {
                    assert_stable(&t);
                }
            }

            #[test]
            fn prefixes_and_mutations_never_panic(t in ticket(), at in any::<prop::sample::Index>(), c in any::<char>()) {
                let s = t.to_string();
                for n in 0..s.len() {
                    prop_assert!(s[..n].parse::<Ticket>().is_err(), "prefix of {} chars parsed", n);
                }
                let i = at.index(s.len());
                let mut mutated = s[..i].to_string();
                mutated.push(c);
                mutated.push_str(&s[i + 1..]);
                if let Ok(m) = mutated.parse::<Ticket>() {
                    assert_stable(&m);
                }
            }
        }
    }

    /// Crash input of the `ticket` fuzz target (odd first byte: the rest
    /// is the postcard body): variant index `u32::MAX` overflowed `+ 1`.
    #[test]
    fn largest_version_says_upgrade() {
        let input = include_bytes!("../../fuzz/regressions/ticket/version-overflow");
        let s = format!("{PREFIX}{}", BASE32.encode(&input[1..]));
        assert!(matches!(
            s.parse::<Ticket>(),
            Err(TicketError::UnsupportedVersion(0x1_0000_0000))
        ));
    }

    #[test]
    fn newer_version_says_upgrade() {
        // variant index 1 = format version 2
        let s = format!("{PREFIX}{}", BASE32.encode(&[1u8, 0, 0, 0]));
        assert!(matches!(
            s.parse::<Ticket>(),
            Err(TicketError::UnsupportedVersion(2))
        ));
    }
}
