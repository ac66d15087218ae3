//! A response of the daemon, from its protobuf bytes to the JSON the page
//! reads: proto field names, every field (defaults too), enums by name,
//! 64-bit numbers as numbers.
//!
//! A listing is one message with one long repeated field (10,000 shares
//! are 4 MB of JSON): decoded whole into a dynamic message it would take
//! several times that. So the elements of a repeated message field are
//! cut out of the bytes as they are and transcoded one at a time, straight
//! into the output; the rest of the message is transcoded as usual.

use std::collections::HashMap;

use bytes::{Buf, Bytes};
use prost::encoding::{decode_key, decode_varint, WireType};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, SerializeOptions};

const OPTIONS: SerializeOptions = SerializeOptions::new()
    .use_proto_field_name(true)
    .skip_default_fields(false)
    .stringify_64_bit_integers(false);

/// `wire`, a message of type `desc`, as JSON.
pub fn transcode(desc: &MessageDescriptor, wire: Bytes) -> Result<Vec<u8>, String> {
    let lists: HashMap<u32, FieldDescriptor> = desc
        .fields()
        .filter(|f| f.is_list() && matches!(f.kind(), Kind::Message(_)))
        .map(|f| (f.number(), f))
        .collect();
    if lists.is_empty() {
        return whole(desc.clone(), wire);
    }
    let (rest, elements) = split(wire, &lists)?;
    let rest = DynamicMessage::decode(desc.clone(), rest).map_err(|e| e.to_string())?;
    // Small: the lists are empty in it.
    let rest = rest
        .serialize_with_options(serde_json::value::Serializer, &OPTIONS)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    out.push(b'{');
    let mut first = true;
    for field in desc.fields() {
        let list = lists.get(&field.number());
        // What the whole message would say: a oneof's unset members are
        // left out.
        let value = rest.get(field.name());
        if list.is_none() && value.is_none() {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut out, field.name()).map_err(|e| e.to_string())?;
        out.push(b':');
        let Some(Kind::Message(item)) = list.map(|l| l.kind()) else {
            serde_json::to_writer(&mut out, &value).map_err(|e| e.to_string())?;
            continue;
        };
        out.push(b'[');
        for (j, bytes) in elements
            .get(&field.number())
            .into_iter()
            .flatten()
            .enumerate()
        {
            if j > 0 {
                out.push(b',');
            }
            let m =
                DynamicMessage::decode(item.clone(), bytes.clone()).map_err(|e| e.to_string())?;
            write(&m, &mut out)?;
        }
        out.push(b']');
    }
    out.push(b'}');
    Ok(out)
}

fn whole(desc: MessageDescriptor, wire: Bytes) -> Result<Vec<u8>, String> {
    let m = DynamicMessage::decode(desc, wire).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    write(&m, &mut out)?;
    Ok(out)
}

fn write(m: &DynamicMessage, out: &mut Vec<u8>) -> Result<(), String> {
    m.serialize_with_options(&mut serde_json::Serializer::new(out), &OPTIONS)
        .map_err(|e| e.to_string())
}

/// The message's bytes without the fields in `lists`, and those fields'
/// elements, each its own bytes (cut, not copied).
fn split(
    wire: Bytes,
    lists: &HashMap<u32, FieldDescriptor>,
) -> Result<(Bytes, HashMap<u32, Vec<Bytes>>), String> {
    let bad = |e: prost::DecodeError| e.to_string();
    let mut rest = Vec::new();
    let mut elements: HashMap<u32, Vec<Bytes>> = HashMap::new();
    let mut buf = wire.clone();
    while buf.has_remaining() {
        let start = wire.len() - buf.remaining();
        let (tag, wire_type) = decode_key(&mut buf).map_err(bad)?;
        let len = match wire_type {
            WireType::Varint => {
                decode_varint(&mut buf).map_err(bad)?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => decode_varint(&mut buf).map_err(bad)? as usize,
            WireType::StartGroup | WireType::EndGroup => return Err("groups are not used".into()),
        };
        if buf.remaining() < len {
            return Err("the message ends inside a field".into());
        }
        let value_at = wire.len() - buf.remaining();
        buf.advance(len);
        let end = wire.len() - buf.remaining();
        if wire_type == WireType::LengthDelimited && lists.contains_key(&tag) {
            elements
                .entry(tag)
                .or_default()
                .push(wire.slice(value_at..end));
        } else {
            rest.extend_from_slice(&wire[start..end]);
        }
    }
    Ok((Bytes::from(rest), elements))
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use ringdrop_proto::v1 as pb;

    use super::*;

    fn pool() -> prost_reflect::DescriptorPool {
        prost_reflect::DescriptorPool::decode(ringdrop_proto::FILE_DESCRIPTOR_SET).unwrap()
    }

    /// Element by element gives what the whole message gives.
    #[test]
    fn a_listing_is_what_the_whole_message_says() {
        let pool = pool();
        let share = |i: u64| pb::Share {
            hash: format!("{i:064x}"),
            name: format!("<b>{i}</b>"),
            size: i << 40,
            rings: vec!["team".into(), "family".into()],
            ..Default::default()
        };
        let list = pb::ListSharesResponse {
            shares: (0..5).map(share).collect(),
        };
        let desc = pool
            .get_message_by_name("ringdrop.v1.ListSharesResponse")
            .unwrap();
        let wire = Bytes::from(list.encode_to_vec());
        let ours: serde_json::Value =
            serde_json::from_slice(&transcode(&desc, wire.clone()).unwrap()).unwrap();
        let theirs: serde_json::Value =
            serde_json::from_slice(&whole(desc.clone(), wire).unwrap()).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours["shares"][3]["size"], 3u64 << 40);
        assert_eq!(ours["shares"][1]["name"], "<b>1</b>");

        let empty = transcode(&desc, Bytes::new()).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&empty).unwrap(),
            serde_json::json!({"shares": []})
        );

        // A message with other fields beside its list, and a message with none.
        let t = pb::Transfer {
            id: 7,
            state: pb::TransferState::Running as i32,
            providers: vec![pb::Provider {
                endpoint_id: "p".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let desc = pool.get_message_by_name("ringdrop.v1.Transfer").unwrap();
        let wire = Bytes::from(t.encode_to_vec());
        let ours: serde_json::Value =
            serde_json::from_slice(&transcode(&desc, wire.clone()).unwrap()).unwrap();
        let theirs: serde_json::Value =
            serde_json::from_slice(&whole(desc, wire).unwrap()).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours["state"], "TRANSFER_STATE_RUNNING");
        assert_eq!(ours["dest"], "");

        let truncated = Bytes::from(list_bytes()[..10].to_vec());
        let desc = pool
            .get_message_by_name("ringdrop.v1.ListSharesResponse")
            .unwrap();
        assert!(transcode(&desc, truncated).is_err());
    }

    fn list_bytes() -> Vec<u8> {
        pb::ListSharesResponse {
            shares: vec![pb::Share {
                name: "x".repeat(40),
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }
}
