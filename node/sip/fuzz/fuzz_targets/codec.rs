//! Every codec entry point on arbitrary bytes: nothing may panic, and whatever parses must
//! survive serialize → parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbx_sip::codec::{self, Frame, StreamFramer};

fuzz_target!(|data: &[u8]| {
    let _ = codec::normalize(data);
    match codec::parse(data) {
        Ok(msg) => {
            let wire = codec::serialize(&msg.sip);
            let again = codec::parse(&wire).expect("a serialized message parses");
            assert_eq!(again.call_id(), msg.call_id());
            assert_eq!(again.cseq(), msg.cseq());
            assert_eq!(again.body(), msg.body());
        }
        Err(error) => {
            let _ = codec::reject(data, &error);
        }
    }
    let _ = codec::can_answer(data);
    let _ = codec::bad_request(data, "Bad Request");

    // The same bytes as a stream, cut where the first byte says.
    let split = data.first().map_or(0, |&b| usize::from(b)) % (data.len() + 1);
    let mut framer = StreamFramer::new();
    for chunk in [&data[..split], &data[split..]] {
        if framer.push(chunk).is_err() {
            break;
        }
        while let Some(frame) = framer.next_message() {
            if let Ok(Frame::Message(message)) = frame {
                let _ = codec::parse(&message);
            }
        }
    }
});
