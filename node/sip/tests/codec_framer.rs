//! Stream framing: every split point, several messages per read, RFC 5626 pings, and the
//! failures that close the connection.

use pbx_sip::codec::{CodecError, Frame, MAX_MESSAGE_LEN, MAX_STREAM_BUFFER, StreamFramer, parse};

const REGISTER: &[u8] = b"REGISTER sip:pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.168.1.50:49152;branch=z9hG4bK-tcp-1;rport\r\n\
From: <sip:1001@pbx.example.com>;tag=a1\r\n\
To: <sip:1001@pbx.example.com>\r\n\
Call-ID: tcp-1@192.168.1.50\r\n\
CSeq: 1 REGISTER\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\
\r\n";

const MESSAGE_WITH_BODY: &[u8] = b"MESSAGE sip:1002@pbx.example.com SIP/2.0\n\
Via: SIP/2.0/TLS 192.168.1.50:49153;branch=z9hG4bK-tls-2\n\
From: <sip:1001@pbx.example.com>;tag=a2\n\
To: <sip:1002@pbx.example.com>\n\
Call-ID: tls-2@192.168.1.50\n\
CSeq: 2 MESSAGE\n\
c: text/plain\n\
l: 12\n\
\n\
hello\r\n\r\nbob";

fn drain(framer: &mut StreamFramer) -> Vec<Result<Frame, CodecError>> {
    std::iter::from_fn(|| framer.next_message()).collect()
}

fn expected() -> Vec<Result<Frame, CodecError>> {
    vec![
        Ok(Frame::Message(REGISTER.to_vec())),
        Ok(Frame::Ping),
        Ok(Frame::Message(MESSAGE_WITH_BODY.to_vec())),
        Ok(Frame::Ping),
    ]
}

fn stream() -> Vec<u8> {
    // A stray CRLF (a pong, or RFC 3261 §7.5 padding) is skipped; double CRLFs are pings.
    [
        b"\r\n".as_slice(),
        REGISTER,
        b"\r\n\r\n",
        MESSAGE_WITH_BODY,
        b"\r\n\r\n",
    ]
    .concat()
}

#[test]
fn all_in_one_push() {
    let mut framer = StreamFramer::new();
    framer.push(&stream()).unwrap();
    assert_eq!(drain(&mut framer), expected());
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn split_at_every_byte_boundary() {
    let bytes = stream();
    for cut in 0..=bytes.len() {
        let mut framer = StreamFramer::new();
        let mut frames = Vec::new();
        framer.push(&bytes[..cut]).unwrap();
        frames.extend(drain(&mut framer));
        framer.push(&bytes[cut..]).unwrap();
        frames.extend(drain(&mut framer));
        assert_eq!(frames, expected(), "cut at {cut}");
    }
}

#[test]
fn one_byte_at_a_time() {
    let bytes = stream();
    let mut framer = StreamFramer::new();
    let mut frames = Vec::new();
    for b in &bytes {
        framer.push(std::slice::from_ref(b)).unwrap();
        frames.extend(drain(&mut framer));
    }
    assert_eq!(frames, expected());
}

#[test]
fn framed_messages_parse() {
    let mut framer = StreamFramer::new();
    framer.push(&stream()).unwrap();
    for frame in drain(&mut framer) {
        if let Ok(Frame::Message(bytes)) = frame {
            let msg = parse(&bytes).unwrap();
            assert!(msg.is_request());
        }
    }
    let mut framer = StreamFramer::new();
    framer.push(MESSAGE_WITH_BODY).unwrap();
    let Some(Ok(Frame::Message(bytes))) = framer.next_message() else {
        panic!("one message")
    };
    assert_eq!(parse(&bytes).unwrap().body(), b"hello\r\n\r\nbob");
}

#[test]
fn big_message_fed_slowly_is_linear_enough() {
    let body = vec![b'x'; 60_000];
    let head = format!(
        "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKbig\r\nFrom: <sip:a@b>;tag=1\r\n\
         To: <sip:a@b>\r\nCall-ID: big\r\nCSeq: 1 MESSAGE\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let whole = [head.as_bytes(), &body].concat();
    let mut framer = StreamFramer::new();
    let mut frames = Vec::new();
    for chunk in whole.chunks(7) {
        framer.push(chunk).unwrap();
        frames.extend(drain(&mut framer));
    }
    assert_eq!(frames, vec![Ok(Frame::Message(whole.clone()))]);
}

#[test]
fn missing_content_length_is_fatal() {
    let mut framer = StreamFramer::new();
    let without: Vec<u8> = String::from_utf8(REGISTER.to_vec())
        .unwrap()
        .replace("Content-Length: 0\r\n", "")
        .into_bytes();
    framer.push(&without).unwrap();
    assert_eq!(
        framer.next_message(),
        Some(Err(CodecError::MissingContentLength))
    );
    // The error is final.
    assert_eq!(framer.next_message(), None);
    assert_eq!(framer.push(REGISTER), Err(CodecError::StreamClosed));
    assert_eq!(framer.next_message(), None);
}

#[test]
fn bad_or_conflicting_content_length_is_fatal() {
    for (from, to, error) in [
        (
            "Content-Length: 0",
            "Content-Length: -1",
            CodecError::BadHeaderValue("Content-Length"),
        ),
        (
            "Content-Length: 0",
            "Content-Length: 0\r\nl: 3",
            CodecError::DuplicateHeader("Content-Length"),
        ),
        (
            "Content-Length: 0",
            "Content-Length: 99999999999",
            CodecError::BadHeaderValue("Content-Length"),
        ),
    ] {
        let mut framer = StreamFramer::new();
        let bytes = String::from_utf8(REGISTER.to_vec())
            .unwrap()
            .replace(from, to);
        framer.push(bytes.as_bytes()).unwrap();
        assert_eq!(framer.next_message(), Some(Err(error)));
    }
}

#[test]
fn oversized_is_fatal() {
    // A Content-Length over the bound.
    let mut framer = StreamFramer::new();
    let bytes = String::from_utf8(REGISTER.to_vec())
        .unwrap()
        .replace("Content-Length: 0", "Content-Length: 70000");
    framer.push(bytes.as_bytes()).unwrap();
    assert_eq!(framer.next_message(), Some(Err(CodecError::TooLarge)));

    // A head that never ends.
    let mut framer = StreamFramer::new();
    framer.push(b"REGISTER sip:x SIP/2.0\r\n").unwrap();
    let line = b"X-Filler: 0123456789012345678901234567890123456789\r\n";
    let mut result = None;
    for _ in 0..2000 {
        framer.push(line).unwrap();
        if let Some(frame) = framer.next_message() {
            result = Some(frame);
            break;
        }
    }
    assert_eq!(result, Some(Err(CodecError::TooLarge)));
    assert!(framer.buffered() == 0);

    // Pushing more than the buffer holds without draining.
    let mut framer = StreamFramer::new();
    let chunk = vec![b'a'; MAX_MESSAGE_LEN];
    let mut outcome = Ok(());
    for _ in 0..=MAX_STREAM_BUFFER / MAX_MESSAGE_LEN {
        outcome = framer.push(&chunk);
        if outcome.is_err() {
            break;
        }
    }
    assert_eq!(outcome, Err(CodecError::StreamOverflow));
    assert_eq!(framer.next_message(), None);
}

#[test]
fn lone_pings_and_partial_pings() {
    let mut framer = StreamFramer::new();
    framer.push(b"\r\n").unwrap();
    assert_eq!(framer.next_message(), None);
    framer.push(b"\r").unwrap();
    assert_eq!(framer.next_message(), None);
    framer.push(b"\n\r\n\r\n").unwrap();
    assert_eq!(drain(&mut framer), vec![Ok(Frame::Ping), Ok(Frame::Ping)]);
    framer.push(b"\n\n\n").unwrap();
    assert_eq!(drain(&mut framer), vec![]);
    assert_eq!(framer.buffered(), 0);
}
