use super::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn server() -> Connection {
    Connection::new(Config::new(Role::Server)).expect("valid config")
}

fn client() -> Connection {
    Connection::new(Config::new(Role::Client)).expect("valid config")
}

fn with(cfg: Config) -> Connection {
    Connection::new(cfg).expect("valid config")
}

/// A raw frame, built independently of the implementation: `b0` is the whole first byte
/// (FIN, RSV, opcode), `len` overrides the declared length.
fn raw(b0: u8, payload: &[u8], key: Option<[u8; 4]>, len: Option<u64>) -> Vec<u8> {
    let n = len.unwrap_or(payload.len() as u64);
    let m = if key.is_some() { 0x80 } else { 0 };
    let mut f = vec![b0];
    if n < 126 {
        f.push(m | n as u8);
    } else if n < 65536 {
        f.push(m | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(m | 127);
        f.extend_from_slice(&n.to_be_bytes());
    }
    match key {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

/// A masked frame as a client sends it.
fn cf(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw(b0, payload, Some(KEY), None)
}

fn text(s: &str, fin: bool) -> Event {
    Event::Data {
        kind: DataKind::Text,
        data: s.as_bytes().to_vec(),
        fin,
    }
}

fn binary(b: &[u8], fin: bool) -> Event {
    Event::Data {
        kind: DataKind::Binary,
        data: b.to_vec(),
        fin,
    }
}

/// Decodes the frames in `bytes` (test oracle, independent of the parser under test):
/// (first byte, unmasked payload, was masked).
fn decode_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>, bool)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let b0 = bytes[0];
        let masked = bytes[1] & 0x80 != 0;
        let (n, mut at) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        let mut payload = if masked {
            let k = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
            at += 4;
            bytes[at..at + n]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ k[i % 4])
                .collect()
        } else {
            bytes[at..at + n].to_vec()
        };
        payload.shrink_to_fit();
        frames.push((b0, payload, masked));
        bytes = &bytes[at + n..];
    }
    frames
}

/// Asserts that `conn` failed with `code`, reported it, and queued exactly one close frame with it.
fn assert_failed(conn: &mut Connection, events: &[Event], code: u16) {
    match events.last() {
        Some(Event::Close {
            code: c,
            local: true,
            ..
        }) => assert_eq!(*c, code, "events: {events:?}"),
        other => panic!("expected a local close {code}, got {other:?} in {events:?}"),
    }
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.failed());
    assert_eq!(conn.close_code(), Some(code));
    let frames = decode_frames(&conn.take_outgoing());
    let closes: Vec<_> = frames.iter().filter(|f| f.0 == 0x88).collect();
    assert_eq!(closes.len(), 1, "one close frame expected: {frames:?}");
    assert_eq!(&closes[0].1[..2], &code.to_be_bytes());
    // Nothing more is accepted.
    assert!(conn.receive(&cf(0x81, b"late")).is_empty());
    assert!(conn.outgoing().is_empty());
}

// -- handshake and wire examples ------------------------------------------------------------------

#[test]
fn accept_key_rfc_example() {
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ==").expect("valid key"),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(
        accept_key(" dGhlIHNhbXBsZSBub25jZQ==\t").expect("valid key"),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn accept_key_rejects_bad_keys() {
    for key in [
        "",
        "not base64!",
        "dGhlIHNhbXBsZSBub25j",     // 14 bytes
        "dGhlIHNhbXBsZSBub25jZQ",   // missing padding
        "dGhlIHNhbXBsZSBub25jZWVl", // 18 bytes
    ] {
        assert!(
            matches!(accept_key(key), Err(Error::InvalidArgument(_))),
            "{key:?}"
        );
    }
}

#[test]
fn rfc_examples_sent() {
    let mut s = server();
    s.send(b"Hello", DataKind::Text).expect("open");
    assert_eq!(
        s.take_outgoing(),
        [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
    s.send_fragment(b"Hel", DataKind::Text, false)
        .expect("open");
    s.send_fragment(b"lo", DataKind::Text, true).expect("open");
    assert_eq!(
        s.take_outgoing(),
        [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]
    );
    s.ping(b"Hello").expect("open");
    assert_eq!(
        s.take_outgoing(),
        [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
    s.pong(b"Hello").expect("open");
    assert_eq!(
        s.take_outgoing(),
        [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
    let big = vec![0xabu8; 256];
    s.send(&big, DataKind::Binary).expect("open");
    let out = s.take_outgoing();
    assert_eq!(out[..4], [0x82, 0x7E, 0x01, 0x00]);
    assert_eq!(&out[4..], &big[..]);
    let big = vec![0xcdu8; 65536];
    s.send(&big, DataKind::Binary).expect("open");
    let out = s.take_outgoing();
    assert_eq!(
        out[..10],
        [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
    );
    assert_eq!(&out[10..], &big[..]);
    assert_eq!(s.bytes_out(), 7 + 9 + 7 + 7 + 260 + 65546);
}

#[test]
fn rfc_masked_hello_received() {
    let wire = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(cf(0x81, b"Hello"), wire);
    let mut s = server();
    assert_eq!(s.receive(&wire), [text("Hello", true)]);
    assert_eq!(s.bytes_in(), 11);
    // The same frame one byte at a time.
    let mut s = server();
    let events: Vec<Event> = wire.iter().flat_map(|b| s.receive(&[*b])).collect();
    assert_eq!(events, [text("Hello", true)]);
    // Unmasked, to a client.
    let mut c = client();
    assert_eq!(
        c.receive(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]),
        [text("Hello", true)]
    );
    // Fragmented, unmasked.
    let mut c = client();
    assert_eq!(
        c.receive(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]),
        [text("Hello", true)]
    );
}

#[test]
fn client_masks_every_frame_with_fresh_keys() {
    let mut c = client();
    let payload = vec![0u8; 64];
    c.send(&payload, DataKind::Binary).expect("open");
    c.send(&payload, DataKind::Binary).expect("open");
    let out = c.take_outgoing();
    let frames = decode_frames(&out);
    assert_eq!(frames.len(), 2);
    for f in &frames {
        assert!(f.2, "client frames are masked");
        assert_eq!(f.1, payload);
    }
    // Zero payload XOR key = key repeated: the two keys differ (random, 2^-32 flake odds).
    let k1 = &out[2..6];
    let k2 = &out[2 + 4 + 64 + 2..2 + 4 + 64 + 2 + 4];
    assert_ne!(k1, k2);
    assert_eq!(&out[6..10], k1);
}

#[test]
fn mask_helpers_agree_for_every_offset_and_length() {
    let mut rng = fastrand::Rng::with_seed(7);
    for len in [0usize, 1, 3, 4, 5, 31, 32, 33, 63, 64, 65, 100, 1000] {
        for offset in 0..8u64 {
            let src: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let expect: Vec<u8> = src
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ KEY[(i + offset as usize) % 4])
                .collect();
            let mut inplace = src.clone();
            apply_mask(&mut inplace, KEY, offset);
            assert_eq!(inplace, expect);
            let mut copied = vec![0u8; len];
            copy_masked(&mut copied, &src, KEY, offset);
            assert_eq!(copied, expect);
            if offset == 0 {
                let masked = Payload::Masked {
                    data: &src,
                    key: KEY,
                };
                let unmasked = Payload::Plain(&expect);
                for p in [masked, unmasked] {
                    // (copy_to_uninit shares the code; its Python caller checks its bytes.)
                    assert_eq!(p.to_vec(), expect);
                }
            }
        }
    }
}

// -- pairs --------------------------------------------------------------------------------------

/// Moves everything `from` has queued into `to`, returning `to`'s events.
fn pump(from: &mut Connection, to: &mut Connection) -> Vec<Event> {
    let bytes = from.take_outgoing();
    to.receive(&bytes)
}

#[test]
fn pair_round_trips_messages() {
    let mut c = client();
    let mut s = server();
    let sizes = [0usize, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20];
    for &n in &sizes {
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        c.send(&data, DataKind::Binary).expect("open");
        assert_eq!(pump(&mut c, &mut s), [binary(&data, true)]);
        s.send(&data, DataKind::Binary).expect("open");
        assert_eq!(pump(&mut s, &mut c), [binary(&data, true)]);
        let t: String = "héllo wörld ✓ 😀 ".chars().cycle().take(n / 4).collect();
        c.send(t.as_bytes(), DataKind::Text).expect("open");
        assert_eq!(pump(&mut c, &mut s), [text(&t, true)]);
        s.send(t.as_bytes(), DataKind::Text).expect("open");
        assert_eq!(pump(&mut s, &mut c), [text(&t, true)]);
    }
}

#[test]
fn pair_round_trips_16_mib() {
    let mut c = client();
    let mut s = server();
    let data: Vec<u8> = (0..16usize << 20).map(|i| (i * 7 % 256) as u8).collect();
    c.send(&data, DataKind::Binary).expect("open");
    let out = c.take_outgoing();
    // Split in 64 KiB reads, as a socket would deliver it.
    let mut events = Vec::new();
    for chunk in out.chunks(65536) {
        events.extend(s.receive(chunk));
    }
    assert_eq!(events, [binary(&data, true)]);
    // One byte more than the limit is refused from the header alone.
    let mut s = server();
    let events = s.receive(&raw(0x82, &[], Some(KEY), Some((16 << 20) + 1)));
    assert_failed(&mut s, &events, 1009);
}

#[test]
fn fragmented_messages_reassemble_and_frames_mode_reports_each_frame() {
    let parts: [&[u8]; 4] = [b"Hel", b"", "lo w\u{f6}".as_bytes(), b"rld"];
    let mut wire = Vec::new();
    wire.extend(cf(0x01, parts[0]));
    wire.extend(cf(0x89, b"mid")); // a ping in the middle of the message
    wire.extend(cf(0x00, parts[1]));
    wire.extend(cf(0x00, parts[2]));
    wire.extend(cf(0x80, parts[3]));
    let mut s = server();
    assert_eq!(
        s.receive(&wire),
        [Event::Ping(b"mid".to_vec()), text("Hello w\u{f6}rld", true)]
    );
    assert_eq!(
        decode_frames(&s.take_outgoing()),
        [(0x8a, b"mid".to_vec(), false)]
    );

    let mut f = with(Config::new(Role::Server).delivery(Delivery::Frames));
    assert_eq!(
        f.receive(&wire),
        [
            text("Hel", false),
            Event::Ping(b"mid".to_vec()),
            text("", false),
            text("lo w\u{f6}", false),
            text("rld", true),
        ]
    );
    // Byte at a time gives the same events in both modes.
    for delivery in [Delivery::Messages, Delivery::Frames] {
        let mut whole = with(Config::new(Role::Server).delivery(delivery));
        let mut split = with(Config::new(Role::Server).delivery(delivery));
        let expect = whole.receive(&wire);
        let got: Vec<Event> = wire.iter().flat_map(|b| split.receive(&[*b])).collect();
        assert_eq!(got, expect);
    }
}

#[test]
fn frames_mode_splits_characters_across_frames() {
    let euro = "\u{20ac}".as_bytes(); // e2 82 ac
    let mut wire = cf(0x01, &euro[..1]);
    wire.extend(cf(0x00, &euro[1..2]));
    wire.extend(cf(0x80, &euro[2..]));
    let mut f = with(Config::new(Role::Server).delivery(Delivery::Frames));
    let events = f.receive(&wire);
    assert_eq!(
        events,
        [
            Event::Data {
                kind: DataKind::Text,
                data: vec![0xe2],
                fin: false
            },
            Event::Data {
                kind: DataKind::Text,
                data: vec![0x82],
                fin: false
            },
            Event::Data {
                kind: DataKind::Text,
                data: vec![0xac],
                fin: true
            },
        ]
    );
    // A character left open at the end of the message is a 1007, in both modes.
    for delivery in [Delivery::Messages, Delivery::Frames] {
        let mut wire = cf(0x01, b"ok");
        wire.extend(cf(0x80, &euro[..2]));
        let mut s = with(Config::new(Role::Server).delivery(delivery));
        let events = s.receive(&wire);
        assert_failed(&mut s, &events, 1007);
    }
}

#[test]
fn random_messages_and_splits_round_trip() {
    let mut rng = fastrand::Rng::with_seed(12345);
    for round in 0..150 {
        let delivery = if round % 2 == 0 {
            Delivery::Messages
        } else {
            Delivery::Frames
        };
        let (mut tx, mut rx) = if round % 3 == 0 {
            (server(), with(Config::new(Role::Client).delivery(delivery)))
        } else {
            (client(), with(Config::new(Role::Server).delivery(delivery)))
        };
        let mut expect = Vec::new();
        for _ in 0..rng.usize(1..8) {
            let kind = if rng.bool() {
                DataKind::Text
            } else {
                DataKind::Binary
            };
            let n = match rng.u8(0..4) {
                0 => rng.usize(0..4),
                1 => rng.usize(0..200),
                2 => rng.usize(0..70_000),
                _ => rng.usize(0..300_000),
            };
            let data: Vec<u8> = match kind {
                DataKind::Text => (0..n)
                    .map(|_| ['a', 'é', '€', '😀'][rng.usize(0..4)])
                    .collect::<String>()
                    .into_bytes(),
                DataKind::Binary => (0..n).map(|_| rng.u8(..)).collect(),
            };
            if rng.bool() {
                if rng.bool() {
                    tx.ping(&data[..data.len().min(125)]).expect("open");
                    expect.push(Event::Ping(data[..data.len().min(125)].to_vec()));
                }
                tx.send(&data, kind).expect("open");
                expect.push(Event::Data {
                    kind,
                    data,
                    fin: true,
                });
            } else {
                // Fragments split at byte positions (text may split characters).
                let mut cuts: Vec<usize> = (0..rng.usize(0..5))
                    .map(|_| rng.usize(0..=data.len()))
                    .collect();
                cuts.push(0);
                cuts.push(data.len());
                cuts.sort_unstable();
                for (i, w) in cuts.windows(2).enumerate() {
                    let fin = i == cuts.len() - 2;
                    tx.send_fragment(&data[w[0]..w[1]], kind, fin)
                        .expect("open");
                    if delivery == Delivery::Frames {
                        expect.push(Event::Data {
                            kind,
                            data: data[w[0]..w[1]].to_vec(),
                            fin,
                        });
                    }
                }
                if delivery == Delivery::Messages {
                    expect.push(Event::Data {
                        kind,
                        data,
                        fin: true,
                    });
                }
            }
        }
        tx.close(1000, "bye").expect("open");
        expect.push(Event::Close {
            code: 1000,
            reason: "bye".into(),
            local: false,
        });
        let wire = tx.take_outgoing();
        let mut got = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let step = match rng.u8(0..3) {
                0 => rng.usize(1..4),
                1 => rng.usize(1..2000),
                _ => rng.usize(1..200_000),
            };
            let end = (at + step).min(wire.len());
            got.extend(rx.receive(&wire[at..end]));
            at = end;
        }
        if got != expect {
            let brief = |e: &[Event]| -> Vec<String> {
                e.iter()
                    .map(|e| match e {
                        Event::Data { kind, data, fin } => {
                            format!("{kind:?}({}, {fin})", data.len())
                        }
                        other => format!("{other:?}"),
                    })
                    .collect()
            };
            panic!(
                "round {round} {delivery:?}: got {:?}, expected {:?}",
                brief(&got),
                brief(&expect)
            );
        }
        assert_eq!(rx.state(), State::Closed);
        // The pongs, then the echo that completes the handshake on the other side.
        let pongs: Vec<Event> = expect
            .iter()
            .filter_map(|e| match e {
                Event::Ping(p) => Some(Event::Pong(p.clone())),
                _ => None,
            })
            .chain([Event::Close {
                code: 1000,
                reason: String::new(),
                local: false,
            }])
            .collect();
        assert_eq!(pump(&mut rx, &mut tx), pongs);
        assert_eq!(tx.state(), State::Closed);
        assert!(!tx.failed() && !rx.failed());
    }
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = fastrand::Rng::with_seed(99);
    for round in 0..3000 {
        let role = if round % 2 == 0 {
            Role::Server
        } else {
            Role::Client
        };
        let delivery = if round % 4 < 2 {
            Delivery::Messages
        } else {
            Delivery::Frames
        };
        let mut cfg = Config::new(role)
            .delivery(delivery)
            .defer_failure_close(round % 8 >= 4);
        cfg.max_message_size = 1 << 16;
        let mut conn = with(cfg);
        let n = rng.usize(0..600);
        let mut data: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
        // Bias towards plausible headers so the parser goes deep.
        if n > 2 && rng.bool() {
            data[0] = [0x81, 0x82, 0x01, 0x00, 0x80, 0x89, 0x8a, 0x88][rng.usize(0..8)];
            data[1] = (data[1] & 0x7f) | if role == Role::Server { 0x80 } else { 0 };
        }
        let mut at = 0;
        while at < data.len() {
            let end = (at + rng.usize(1..64)).min(data.len());
            for event in conn.receive(&data[at..end]) {
                if let Event::Close { code, .. } = event {
                    assert!(is_valid_close_code(code) || code == 1005, "{code}");
                }
            }
            at = end;
        }
        if conn.state() == State::Failing {
            assert!(conn.failed());
            conn.close(1000, "")
                .expect("failing: close sends the failure");
            assert_eq!(conn.state(), State::Closed);
        }
        // Whatever happened, the outgoing bytes are well-formed frames.
        for (b0, payload, masked) in decode_frames(&conn.take_outgoing()) {
            assert!(matches!(b0, 0x88 | 0x8a), "{b0:#x}");
            assert_eq!(masked, role == Role::Client);
            assert!(payload.len() <= 125);
        }
    }
}

// -- protocol violations ----------------------------------------------------------------------

/// Every kind of peer violation: (name, wire bytes, the close code we fail with). Cases named
/// "2 MiB ..." need `max_message_size = 1 MiB` (see [`violation_config`]).
fn violation_cases() -> Vec<(&'static str, Vec<u8>, u16)> {
    let mut utf8_bad = cf(0x01, b"ok");
    utf8_bad.extend(cf(0x80, b"\xff"));
    vec![
        ("rsv1", cf(0xC1, b"hi"), 1002),
        ("rsv2", cf(0xA1, b"hi"), 1002),
        ("rsv3", cf(0x91, b"hi"), 1002),
        ("opcode 3", cf(0x83, b""), 1002),
        ("opcode 7", cf(0x87, b""), 1002),
        ("opcode 0xB", cf(0x8B, b""), 1002),
        ("opcode 0xF", cf(0x8F, b""), 1002),
        ("fragmented ping", cf(0x09, b"p"), 1002),
        ("fragmented close", cf(0x08, &1000u16.to_be_bytes()), 1002),
        ("ping of 126", cf(0x89, &[b'x'; 126]), 1002),
        ("pong of 126", cf(0x8A, &[b'x'; 126]), 1002),
        ("unmasked", raw(0x81, b"hello", None, None), 1002),
        ("lone continuation", cf(0x80, b"x"), 1002),
        (
            "new message inside fragments",
            [cf(0x01, b"a"), cf(0x81, b"b")].concat(),
            1002,
        ),
        (
            "binary inside text",
            [cf(0x01, b"a"), cf(0x82, b"b")].concat(),
            1002,
        ),
        (
            "64-bit length msb",
            raw(0x82, b"abc", Some(KEY), Some((1 << 63) + 3)),
            1002,
        ),
        (
            "64-bit length 2^63-1",
            raw(0x82, b"abc", Some(KEY), Some((1 << 63) - 1)),
            1009,
        ),
        (
            "16-bit length for 5",
            [vec![0x82, 0xFE, 0, 5], KEY.to_vec()].concat(),
            1002,
        ),
        (
            "64-bit length for 300",
            [
                vec![0x82, 0xFF],
                300u64.to_be_bytes().to_vec(),
                KEY.to_vec(),
            ]
            .concat(),
            1002,
        ),
        (
            "invalid utf-8",
            cf(
                0x81,
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            ),
            1007,
        ),
        ("invalid utf-8 in last fragment", utf8_bad, 1007),
        ("truncated utf-8 at end", cf(0x81, b"\xe2\x82"), 1007),
        ("close with 1 byte", cf(0x88, b"\x03"), 1002),
        ("close 999", cf(0x88, &999u16.to_be_bytes()), 1002),
        ("close 1004", cf(0x88, &1004u16.to_be_bytes()), 1002),
        ("close 1005", cf(0x88, &1005u16.to_be_bytes()), 1002),
        ("close 1006", cf(0x88, &1006u16.to_be_bytes()), 1002),
        ("close 1015", cf(0x88, &1015u16.to_be_bytes()), 1002),
        ("close 1016", cf(0x88, &1016u16.to_be_bytes()), 1002),
        ("close 2999", cf(0x88, &2999u16.to_be_bytes()), 1002),
        ("close 5000", cf(0x88, &5000u16.to_be_bytes()), 1002),
        ("close 65535", cf(0x88, &65535u16.to_be_bytes()), 1002),
        (
            "close reason not utf-8",
            cf(0x88, b"\x03\xe8\xff\xfe"),
            1007,
        ),
        (
            "2 MiB frame over a 1 MiB limit",
            raw(0x82, &[], Some(KEY), Some(2 << 20)),
            1009,
        ),
    ]
}

fn violation_config(name: &str) -> Config {
    let mut cfg = Config::new(Role::Server);
    if name.starts_with("2 MiB") {
        cfg.max_message_size = 1 << 20;
    }
    cfg
}

#[test]
fn violations_fail_with_the_right_code() {
    assert!(
        !Config::new(Role::Server).defer_failure_close,
        "off by default"
    );
    for (name, wire, code) in violation_cases() {
        let cfg = violation_config(name);
        // Whole, and one byte at a time.
        let mut s = with(cfg.clone());
        let events = s.receive(&wire);
        assert_failed(&mut s, &events, code);
        let mut s = with(cfg);
        let events: Vec<Event> = wire.iter().flat_map(|b| s.receive(&[*b])).collect();
        assert!(
            matches!(events.last(), Some(Event::Close { code: c, local: true, .. }) if *c == code),
            "{name}: {events:?}"
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::Close { .. }))
                .count(),
            1,
            "{name}"
        );
    }
}

// -- deferred failure close -------------------------------------------------------------------

/// Asserts that `conn` is failing with `code`: reported once, last; nothing queued; input dead.
fn assert_failing(conn: &mut Connection, events: &[Event], code: u16, name: &str) {
    assert!(
        matches!(events.last(), Some(Event::Close { code: c, local: true, .. }) if *c == code),
        "{name}: {events:?}"
    );
    let closes = events
        .iter()
        .filter(|e| matches!(e, Event::Close { .. }))
        .count();
    assert_eq!(closes, 1, "{name}: {events:?}");
    assert_eq!(conn.state(), State::Failing, "{name}");
    assert!(conn.failed(), "{name}");
    assert_eq!(conn.close_code(), Some(code), "{name}");
    assert!(conn.outgoing().is_empty(), "{name}: nothing queued yet");
    // Input is dead: a ping is neither reported nor answered, data is not delivered.
    let late = [cf(0x89, b"ping"), cf(0x81, b"late"), cf(0x88, b"\x03\xe8")].concat();
    assert!(conn.receive(&late).is_empty(), "{name}");
    assert!(conn.outgoing().is_empty(), "{name}");
    assert_eq!(conn.state(), State::Failing, "{name}");
}

#[test]
fn deferred_failure_close_lets_replies_precede_it() {
    // Autobahn 3.2: a text message, then a frame with RSV2 set, then a ping, in one flight.
    let wire = [cf(0x81, b"Hello"), cf(0xA1, b"bad"), cf(0x89, b"")].concat();
    let cfg = Config::new(Role::Server).defer_failure_close(true);
    for split in [wire.len(), 1, 3] {
        let mut s = with(cfg.clone());
        let events: Vec<Event> = wire.chunks(split).flat_map(|c| s.receive(c)).collect();
        assert_eq!(events[0], text("Hello", true), "split {split}");
        assert_failing(&mut s, &events, 1002, "rsv2");
        assert_eq!(events.len(), 2);
        let reason = s.close_reason().expect("failed").to_owned();
        assert!(reason.contains("reserved bits"), "{reason}");

        // Replies, fragments and control frames may still be sent.
        s.send(b"Hello", DataKind::Text)
            .expect("failing allows data");
        s.send_fragment(b"a", DataKind::Binary, false)
            .expect("fragment");
        s.ping(b"p").expect("failing allows a ping");
        s.send_fragment(b"b", DataKind::Binary, true)
            .expect("fragment");
        assert_eq!(s.state(), State::Failing);

        // close() queues the failure's code and reason, whatever its arguments.
        s.close(4000, "ignored")
            .expect("failing: close sends the failure");
        assert_eq!(s.state(), State::Closed);
        assert_eq!(s.close_code(), Some(1002));
        assert_eq!(s.close_reason(), Some(reason.as_str()));
        let frames = decode_frames(&s.take_outgoing());
        let mut close_payload = 1002u16.to_be_bytes().to_vec();
        close_payload.extend_from_slice(reason.as_bytes());
        assert_eq!(
            frames,
            [
                (0x81, b"Hello".to_vec(), false),
                (0x02, b"a".to_vec(), false),
                (0x89, b"p".to_vec(), false),
                (0x80, b"b".to_vec(), false),
                (0x88, close_payload, false),
            ]
        );
        // Then closed as after any failure.
        assert!(s.send(b"x", DataKind::Text).is_err());
        assert!(s.close(1000, "").is_err());
        assert!(s.receive(&cf(0x81, b"after")).is_empty());
        assert!(s.outgoing().is_empty());
    }
}

#[test]
fn every_violation_defers_its_close() {
    for (name, wire, code) in violation_cases() {
        let cfg = violation_config(name).defer_failure_close(true);
        let mut s = with(cfg.clone());
        let events = s.receive(&wire);
        assert_failing(&mut s, &events, code, name);
        s.close(1000, "").expect("failing");
        let frames = decode_frames(&s.take_outgoing());
        assert_eq!(frames.len(), 1, "{name}: {frames:?}");
        assert_eq!(frames[0].0, 0x88, "{name}");
        assert_eq!(&frames[0].1[..2], &code.to_be_bytes(), "{name}");
        assert!(frames[0].1.len() <= MAX_CONTROL_PAYLOAD, "{name}");
        assert_eq!(s.state(), State::Closed);
        // Byte at a time: the same single close event.
        let mut s = with(cfg);
        let events: Vec<Event> = wire.iter().flat_map(|b| s.receive(&[*b])).collect();
        assert_failing(&mut s, &events, code, name);
    }
}

#[test]
fn deferred_failure_close_in_other_modes_and_roles() {
    // Frames mode: the frames before the bad one are delivered, nothing after it.
    let wire = [
        cf(0x01, b"one "),
        cf(0x00, b"two"),
        cf(0x80, b"\xff"),
        cf(0x81, b"never"),
    ]
    .concat();
    let cfg = Config::new(Role::Server)
        .delivery(Delivery::Frames)
        .defer_failure_close(true);
    let mut s = with(cfg);
    let events = s.receive(&wire);
    assert_eq!(events[..2], [text("one ", false), text("two", false)]);
    assert_failing(&mut s, &events, 1007, "frames mode");
    assert_eq!(events.len(), 3);

    // Client role: the deferred close is masked like every client frame.
    let mut c = with(Config::new(Role::Client).defer_failure_close(true));
    let events = c.receive(&[raw(0x82, b"ok", None, None), cf(0x81, b"masked")].concat());
    assert_eq!(events[0], binary(b"ok", true));
    assert_failing(&mut c, &events, 1002, "client");
    c.close(1000, "").expect("failing");
    let frames = decode_frames(c.outgoing());
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].0, frames[0].2), (0x88, true));
    assert_eq!(&frames[0].1[..2], &1002u16.to_be_bytes());

    // A violation after we sent our close: nothing to defer, closed at once (as by default).
    let mut s = with(Config::new(Role::Server).defer_failure_close(true));
    s.close(4000, "bye").expect("open");
    s.take_outgoing();
    let events = s.receive(&[cf(0x81, b"still delivered"), cf(0xC1, b"x")].concat());
    assert_eq!(events[0], text("still delivered", true));
    assert!(matches!(
        events[1],
        Event::Close {
            code: 1002,
            local: true,
            ..
        }
    ));
    assert_eq!(s.state(), State::Closed);
    assert!(s.outgoing().is_empty(), "our close was already sent");
    assert!(s.close(1000, "").is_err());

    // The peer's valid close is not a failure: echoed at once, with or without the option.
    let mut s = with(Config::new(Role::Server).defer_failure_close(true));
    let events = s.receive(&[cf(0x81, b"hi"), cf(0x88, b"\x03\xe8")].concat());
    assert_eq!(events.len(), 2);
    assert_eq!(s.state(), State::Closed);
    assert!(!s.failed());
    assert_eq!(
        decode_frames(s.outgoing()),
        [(0x88, vec![0x03, 0xe8], false)]
    );
}

#[test]
fn client_rejects_masked_frames() {
    let mut c = client();
    let events = c.receive(&cf(0x81, b"hi"));
    assert_failed(&mut c, &events, 1002);
}

#[test]
fn invalid_utf8_fails_fast_mid_frame() {
    // Autobahn 6.4.x: the frame header declares more bytes than sent; the invalid byte is in the
    // first part and the connection must fail before the rest arrives.
    for delivery in [Delivery::Messages, Delivery::Frames] {
        let payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80hello";
        let wire = cf(0x81, payload);
        let mut s = with(Config::new(Role::Server).delivery(delivery));
        // Header + the valid prefix + the first byte of the invalid sequence: not yet decidable.
        assert!(s.receive(&wire[..6 + 12]).is_empty());
        // 0xf4 0x90 is already invalid (above U+10FFFF).
        let events = s.receive(&wire[6 + 12..6 + 13]);
        assert_failed(&mut s, &events, 1007);
    }
    // Split inside a character across fragments: a bad continuation byte fails at once.
    let mut s = server();
    assert!(s.receive(&cf(0x01, b"a\xe2")).is_empty());
    let events = s.receive(&raw(0x00, b"\x28more", Some(KEY), Some(100)));
    assert_failed(&mut s, &events, 1007);
}

#[test]
fn limits_are_checked_from_the_header() {
    // Fragment count.
    let mut cfg = Config::new(Role::Server);
    cfg.max_fragments = 3;
    let mut s = with(cfg.clone());
    let mut wire = cf(0x02, b"a");
    wire.extend(cf(0x00, b"b"));
    wire.extend(cf(0x80, b"c"));
    assert_eq!(s.receive(&wire), [binary(b"abc", true)]);
    wire = cf(0x02, b"a");
    for _ in 0..2 {
        wire.extend(cf(0x00, b""));
    }
    wire.extend(cf(0x80, b"c"));
    let events = s.receive(&wire);
    assert_failed(&mut s, &events, 1009);
    // Message size across fragments: refused at the header of the fragment that crosses it,
    // before its payload arrives.
    let mut cfg = Config::new(Role::Server).delivery(Delivery::Frames);
    cfg.max_message_size = 10;
    let mut s = with(cfg);
    assert_eq!(s.receive(&cf(0x02, b"123456")), [binary(b"123456", false)]);
    let hdr = raw(0x80, b"12345", Some(KEY), None);
    let events = s.receive(&hdr[..6]);
    assert_failed(&mut s, &events, 1009);
    // Frame size.
    let mut cfg = Config::new(Role::Server);
    cfg.max_frame_size = 4;
    let mut s = with(cfg);
    assert_eq!(s.receive(&cf(0x82, b"1234")), [binary(b"1234", true)]);
    let events = s.receive(&cf(0x82, b"12345"));
    assert_failed(&mut s, &events, 1009);
    // A huge declared length allocates nothing up front.
    let mut s = server();
    let mut wire = raw(0x82, &[], Some(KEY), Some(16 << 20));
    wire.extend_from_slice(&[0u8; 10]);
    assert!(s.receive(&wire).is_empty());
    assert!(s.buf.capacity() < 1 << 16, "{}", s.buf.capacity());
    assert!(matches!(
        Connection::new(Config {
            max_fragments: 0,
            ..Config::new(Role::Server)
        }),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn autobahn_9_3_many_tiny_fragments_pass() {
    // 4 MiB of text in 64-byte fragments: 65,536 frames.
    let mut s = server();
    let total = 4 << 20;
    let mut wire = Vec::with_capacity(total / 64 * 70);
    for i in 0..total / 64 {
        let b0 = match i {
            0 => 0x01,
            _ if i == total / 64 - 1 => 0x80,
            _ => 0x00,
        };
        wire.extend(cf(b0, &[b'*'; 64]));
    }
    let events: Vec<Event> = wire.chunks(1 << 16).flat_map(|c| s.receive(c)).collect();
    assert_eq!(events.len(), 1);
    assert!(
        matches!(&events[0], Event::Data { kind: DataKind::Text, data, fin: true } if data.len() == total)
    );
}

// -- control frames and the close handshake ----------------------------------------------------

#[test]
fn pings_are_answered_at_once_and_reported() {
    let mut s = server();
    let events = s.receive(&[cf(0x89, b"one"), cf(0x89, b""), cf(0x8A, b"pong!")].concat());
    assert_eq!(
        events,
        [
            Event::Ping(b"one".to_vec()),
            Event::Ping(vec![]),
            Event::Pong(b"pong!".to_vec())
        ]
    );
    assert_eq!(
        decode_frames(&s.take_outgoing()),
        [(0x8a, b"one".to_vec(), false), (0x8a, vec![], false)]
    );
    // A 125-byte ping split over three reads.
    let wire = cf(0x89, &[7u8; 125]);
    let mut s = server();
    assert!(s.receive(&wire[..3]).is_empty());
    assert!(s.receive(&wire[3..50]).is_empty());
    assert_eq!(s.receive(&wire[50..]), [Event::Ping(vec![7u8; 125])]);
    assert_eq!(decode_frames(s.outgoing()), [(0x8a, vec![7u8; 125], false)]);
}

#[test]
fn close_handshake_initiated_by_either_side() {
    // Client closes, server echoes the code.
    let mut c = client();
    let mut s = server();
    c.close(1001, "going away").expect("open");
    assert_eq!(c.state(), State::Closing);
    assert!(c.send(b"x", DataKind::Binary).is_err());
    assert!(c.ping(b"").is_err());
    assert_eq!(
        pump(&mut c, &mut s),
        [Event::Close {
            code: 1001,
            reason: "going away".into(),
            local: false
        }]
    );
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.close_reason(), Some("going away"));
    assert!(s.send(b"x", DataKind::Binary).is_err());
    assert!(s.close(1000, "").is_err());
    assert_eq!(
        decode_frames(s.outgoing()),
        [(0x88, vec![0x03, 0xe9], false)]
    );
    let events = pump(&mut s, &mut c);
    assert_eq!(
        events,
        [Event::Close {
            code: 1001,
            reason: String::new(),
            local: false
        }]
    );
    assert_eq!(c.state(), State::Closed);
    assert!(c.outgoing().is_empty(), "no second close");

    // Server closes; data the client sent meanwhile still arrives; a ping after our close is
    // reported but not answered.
    let mut c = client();
    let mut s = server();
    s.close(4000, "done").expect("open");
    c.send(b"in flight", DataKind::Binary).expect("open");
    c.ping(b"late ping").expect("open");
    let events = pump(&mut c, &mut s);
    assert_eq!(
        events,
        [
            binary(b"in flight", true),
            Event::Ping(b"late ping".to_vec())
        ]
    );
    assert_eq!(decode_frames(s.outgoing()).len(), 1, "only the close");
    pump(&mut s, &mut c);
    pump(&mut c, &mut s);
    assert_eq!((c.state(), s.state()), (State::Closed, State::Closed));
    assert_eq!(s.close_code(), Some(4000));

    // An empty close is reported as 1005 and echoed empty.
    let mut s = server();
    assert_eq!(
        s.receive(&cf(0x88, b"")),
        [Event::Close {
            code: 1005,
            reason: String::new(),
            local: false
        }]
    );
    assert_eq!(decode_frames(s.outgoing()), [(0x88, vec![], false)]);
    // Data after the close is ignored.
    assert!(s.receive(&cf(0x81, b"after")).is_empty());
}

#[test]
fn close_codes() {
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ] {
        assert!(is_valid_close_code(code), "{code}");
        let mut s = server();
        let events = s.receive(&cf(0x88, &code.to_be_bytes()));
        assert_eq!(
            events,
            [Event::Close {
                code,
                reason: String::new(),
                local: false
            }]
        );
        let mut s = server();
        s.close(code, "").expect("valid code");
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        assert!(!is_valid_close_code(code), "{code}");
        assert!(matches!(
            server().close(code, ""),
            Err(Error::InvalidArgument(_))
        ));
    }
    let mut s = server();
    assert!(s.close(1000, &"x".repeat(124)).is_err());
    s.close(1000, &"x".repeat(123)).expect("123 bytes fit");
    assert_eq!(s.outgoing().len(), 2 + 125);
}

#[test]
fn send_misuse_is_an_error() {
    let mut s = server();
    assert!(matches!(s.ping(&[0; 126]), Err(Error::InvalidArgument(_))));
    assert!(matches!(s.pong(&[0; 126]), Err(Error::InvalidArgument(_))));
    s.ping(&[0; 125]).expect("125 is fine");
    s.send_fragment(b"a", DataKind::Text, false).expect("open");
    assert!(
        s.send(b"b", DataKind::Text).is_err(),
        "whole message inside a fragmented one"
    );
    assert!(
        s.send_fragment(b"b", DataKind::Binary, true).is_err(),
        "interleaving kinds"
    );
    // Control frames may interleave.
    s.ping(b"p").expect("open");
    s.send_fragment(b"b", DataKind::Text, true)
        .expect("same kind continues");
    s.send(b"c", DataKind::Binary).expect("message finished");
    let frames = decode_frames(&s.take_outgoing());
    let firsts: Vec<u8> = frames.iter().map(|f| f.0).collect();
    assert_eq!(firsts, [0x89, 0x01, 0x89, 0x80, 0x82]);
}

#[test]
fn buffers_are_released_after_large_messages() {
    let mut s = server();
    let data = vec![1u8; 3 << 20];
    let wire = cf(0x82, &data);
    let events: Vec<Event> = wire.chunks(1 << 16).flat_map(|c| s.receive(c)).collect();
    assert_eq!(events, [binary(&data, true)]);
    assert!(s.buf.capacity() <= KEEP_CAPACITY);
    s.send(&data, DataKind::Binary).expect("open");
    s.clear_outgoing();
    assert!(s.out.capacity() <= KEEP_CAPACITY);
    assert_eq!(s.bytes_out(), 3 * (1 << 20) + 10);
}
