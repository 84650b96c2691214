//! AWS Signature Version 4: request signing and verification, presigned query strings, and the
//! chained event-stream signatures (`AWS4-HMAC-SHA256-PAYLOAD`) of SageMaker's bidirectional
//! stream.
//!
//! * Requests: [`sign_request`] builds the canonical request (non-S3 rules: the path is
//!   URI-encoded once more, optionally dot-segment normalized; query pairs decoded, re-encoded and
//!   sorted; header names lowercased, values trimmed with inner runs of spaces collapsed,
//!   duplicates joined with `,`), the string to sign, the signature and the `Authorization`
//!   header. [`verify_request`] rebuilds the same from what a server received (`host` is the
//!   HTTP/2 `:authority`) and compares in constant time.
//! * Events: [`EventSigner`] wraps an encoded inner message into an outer message with `:date`
//!   (timestamp, ms) and `:chunk-signature` (32 raw bytes), chaining each signature from the
//!   previous one, seeded with the request signature. [`EventVerifier`] checks that chain and
//!   notices the final empty frame (old clients end without one; that is reported, not refused).
//!
//! The signing key is derived once per (date, region, service) and kept, pre-keyed, in the
//! signer and verifier objects: one event costs one HMAC-SHA256 plus two SHA-256 digests.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::eventstream::{self, HeaderRef, HeaderValueRef, Message, MessageRef};
use crate::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Algorithm name of request signatures.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Algorithm name of event (chunk) signatures.
pub const EVENT_ALGORITHM: &str = "AWS4-HMAC-SHA256-PAYLOAD";
/// `x-amz-content-sha256` of a request whose body is a signed event stream.
pub const STREAMING_EVENTS_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-EVENTS";
/// `x-amz-content-sha256` of a request whose body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Hex SHA-256 of the empty string (the payload hash of a request without a body).
pub const EMPTY_SHA256_HEX: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Default tolerance between a request's `x-amz-date` and the verifier's clock (AWS: 5 minutes).
pub const DEFAULT_MAX_SKEW_SECONDS: f64 = 300.0;

/// Headers a signer never signs: hop-by-hop headers, headers proxies rewrite, and the
/// `Authorization` header itself (`aws_sdk_signers/signers.py` L25-40). `proxy-*` is a prefix.
const UNSIGNED_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "authorization",
    "connection",
    "expect",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
];

/// Bounds on what a verifier accepts (hostile input): longer `Authorization` headers, more
/// signed headers or more bytes of request than this are refused before any hashing.
pub const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;
pub const MAX_SIGNED_HEADERS: usize = 128;
pub const MAX_REQUEST_HEADERS: usize = 1024;
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Encoded length of the `:date` header block (`05 ':date' 08 <i64>`).
const DATE_HEADER_LEN: usize = 15;
/// Encoded length of an outer (envelope) message around an inner message of `n` bytes:
/// 12 prelude + 15 `:date` + 52 `:chunk-signature` + n + 4 CRC.
pub const ENVELOPE_OVERHEAD: usize = 12 + DATE_HEADER_LEN + 52 + 4;

// ---------------------------------------------------------------------------------------------
// Small helpers: hex, hashing, HMAC
// ---------------------------------------------------------------------------------------------

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex32(bytes: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX_DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = HEX_DIGITS[usize::from(b & 0x0f)];
    }
    out
}

/// Lowercase hex of a 32-byte digest or signature.
pub fn hex_string(bytes: &[u8; 32]) -> String {
    hex::encode(bytes)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn sha256_hex(data: &[u8]) -> [u8; 64] {
    hex32(&sha256(data))
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; `InvalidLength` cannot happen.
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = new_mac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Parse a 64-digit lowercase hex signature (what SigV4 puts on the wire).
fn parse_signature_hex(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64
        || !text
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn signature_arg(text: &str, what: &str) -> Result<[u8; 32]> {
    parse_signature_hex(text.as_bytes()).ok_or_else(|| {
        Error::invalid(format!(
            "{what} must be 64 lowercase hex digits (a SigV4 signature), got {} characters",
            text.len()
        ))
    })
}

fn mismatch(message: impl Into<String>) -> Error {
    Error::SignatureMismatch {
        message: message.into(),
    }
}

/// Show at most `limit` characters of untrusted text in an error message, escaped.
fn shown(bytes: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .take(limit)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > limit {
        out.push_str("...");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------------------------

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// A SigV4 timestamp, `YYYYMMDDTHHMMSSZ` (UTC, whole seconds, years 0000-9999).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AmzDate {
    text: [u8; 16],
    unix: i64,
}

impl AmzDate {
    const MIN_UNIX: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const MAX_UNIX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

    /// The timestamp of `secs` seconds since the Unix epoch.
    pub fn from_unix_seconds(secs: i64) -> Result<Self> {
        if !(Self::MIN_UNIX..=Self::MAX_UNIX).contains(&secs) {
            return Err(Error::invalid(format!(
                "time {secs} s since the epoch is outside years 0000-9999"
            )));
        }
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let rem = secs.rem_euclid(86_400);
        let mut text = [0u8; 16];
        let mut put = |at: usize, value: i64, width: usize| {
            let mut v = value;
            for i in (0..width).rev() {
                // `v` is non-negative and below 10^width here.
                text[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year, 4);
        put(4, month, 2);
        put(6, day, 2);
        put(9, rem / 3600, 2);
        put(11, rem / 60 % 60, 2);
        put(13, rem % 60, 2);
        text[8] = b'T';
        text[15] = b'Z';
        Ok(AmzDate { text, unix: secs })
    }

    /// The timestamp of an event-stream `:date` value (ms since the epoch), truncated to whole
    /// seconds (what the event signer does).
    pub fn from_millis(ms: i64) -> Result<Self> {
        Self::from_unix_seconds(ms.div_euclid(1000))
    }

    /// Parse `YYYYMMDDTHHMMSSZ` strictly (calendar-valid, no leap seconds).
    pub fn parse(text: &str) -> Result<Self> {
        let b = text.as_bytes();
        let bad = || {
            Error::invalid(format!(
                "'{}' is not a SigV4 timestamp (YYYYMMDDTHHMMSSZ)",
                shown(b, 40)
            ))
        };
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return Err(bad());
        }
        let num = |range: Range<usize>| -> Option<i64> {
            let digits = &b[range];
            digits.iter().all(u8::is_ascii_digit).then(|| {
                digits
                    .iter()
                    .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
            })
        };
        let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
            num(0..4),
            num(4..6),
            num(6..8),
            num(9..11),
            num(11..13),
            num(13..15),
        ) else {
            return Err(bad());
        };
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(bad());
        }
        let unix = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
        let mut text_bytes = [0u8; 16];
        text_bytes.copy_from_slice(b);
        Ok(AmzDate {
            text: text_bytes,
            unix,
        })
    }

    /// `YYYYMMDDTHHMMSSZ`.
    pub fn as_str(&self) -> &str {
        // Always ASCII by construction.
        std::str::from_utf8(&self.text).unwrap_or_default()
    }

    /// `YYYYMMDD`, the date of the credential scope.
    pub fn date8(&self) -> &str {
        &self.as_str()[..8]
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.unix
    }
}

impl fmt::Debug for AmzDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmzDate({})", self.as_str())
    }
}

impl fmt::Display for AmzDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Credential scope and signing key
// ---------------------------------------------------------------------------------------------

/// The credential scope `YYYYMMDD/<region>/<service>/aws4_request`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    pub date8: String,
    pub region: String,
    pub service: String,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/aws4_request",
            self.date8, self.region, self.service
        )
    }
}

/// A scope component (region, service, access key id) must be non-empty and printable, without
/// `/`, `,`, `=` or whitespace, so that the `Authorization` header parses back unambiguously.
fn check_component(value: &str, what: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    if value.len() > 256
        || !value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b',' | b'=' | b';'))
    {
        return Err(Error::invalid(format!(
            "{what} '{}' must be printable ASCII of at most 256 characters without '/', ',', ';', '=' or spaces",
            shown(value.as_bytes(), 64)
        )));
    }
    Ok(())
}

fn check_date8(date8: &str) -> Result<()> {
    if date8.len() != 8 {
        return Err(Error::invalid(format!(
            "date '{}' must be YYYYMMDD",
            shown(date8.as_bytes(), 20)
        )));
    }
    AmzDate::parse(&format!("{date8}T000000Z")).map(|_| ())
}

/// The SigV4 signing key: `HMAC("AWS4"+secret, date8)` → region → service → `aws4_request`.
pub fn derive_signing_key(
    secret_access_key: &str,
    date8: &str,
    region: &str,
    service: &str,
) -> Result<[u8; 32]> {
    check_date8(date8)?;
    check_component(region, "region")?;
    check_component(service, "service")?;
    Ok(derive_key_unchecked(
        secret_access_key,
        date8,
        region,
        service,
    ))
}

fn derive_key_unchecked(secret: &str, date8: &str, region: &str, service: &str) -> [u8; 32] {
    let mut k_secret = Vec::with_capacity(4 + secret.len());
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret.as_bytes());
    let k_date = hmac(&k_secret, date8.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// A secret plus a fixed region and service, with the pre-keyed HMAC of the last date used.
/// Event streams rarely cross midnight, so one entry is enough; crossing it re-derives.
#[derive(Clone)]
struct KeyCache {
    secret: String,
    region: String,
    service: String,
    cached: Option<CachedKey>,
}

#[derive(Clone)]
struct CachedKey {
    date8: [u8; 8],
    scope: String,
    mac: HmacSha256,
}

impl KeyCache {
    fn new(secret: &str, region: &str, service: &str) -> Result<Self> {
        check_component(region, "region")?;
        check_component(service, "service")?;
        Ok(KeyCache {
            secret: secret.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            cached: None,
        })
    }

    /// The pre-keyed HMAC and the scope string for `date`'s day.
    fn for_date(&mut self, date: &AmzDate) -> (&HmacSha256, &str) {
        let mut date8 = [0u8; 8];
        date8.copy_from_slice(&date.text[..8]);
        let fresh = match &self.cached {
            Some(c) => c.date8 != date8,
            None => true,
        };
        if fresh {
            let key = derive_key_unchecked(&self.secret, date.date8(), &self.region, &self.service);
            let scope = format!(
                "{}/{}/{}/aws4_request",
                date.date8(),
                self.region,
                self.service
            );
            self.cached = Some(CachedKey {
                date8,
                scope,
                mac: new_mac(&key),
            });
        }
        match &self.cached {
            Some(c) => (&c.mac, c.scope.as_str()),
            None => unreachable!("the cache was filled just above"),
        }
    }
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("secret", &"<redacted>")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical request pieces
// ---------------------------------------------------------------------------------------------

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 percent-encoding of every byte but the unreserved ones (and `/` if `keep_slash`),
/// uppercase hex, as SigV4 requires.
fn uri_encode_into(out: &mut String, input: &[u8], keep_slash: bool) {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(UPPER[usize::from(b >> 4)]));
            out.push(char::from(UPPER[usize::from(b & 0x0f)]));
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode `%XX` escapes; a `%` not followed by two hex digits stays as is. `+` is not a space.
fn percent_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'%') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex_value(input[i + 1]), hex_value(input[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// Remove `.` and `..` segments and empty segments (`//`), keeping a trailing slash: the
/// normalization aws-c-auth applies for non-S3 services (`normalize: true` in its suite).
fn normalize_path(path: &[u8]) -> Vec<u8> {
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in path.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = Vec::with_capacity(path.len() + 1);
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() || path.ends_with(b"/") {
        out.push(b'/');
    }
    out
}

/// The canonical URI: the (optionally normalized) path URI-encoded once more, `/` kept. The
/// path is taken as sent (already percent-encoded), so `%20` becomes `%2520`: the standard
/// non-S3 double encoding. An empty path is `/`.
pub fn canonical_uri(path: &[u8], normalize: bool) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    if normalize {
        uri_encode_into(&mut out, &normalize_path(path), true);
    } else if path.is_empty() {
        out.push('/');
    } else {
        if path[0] != b'/' {
            out.push('/');
        }
        uri_encode_into(&mut out, path, true);
    }
    out
}

fn query_pairs(query: &[u8]) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for part in query.split(|&b| b == b'&') {
        if part.is_empty() {
            continue;
        }
        let (key, value) = match part.iter().position(|&b| b == b'=') {
            Some(at) => (&part[..at], &part[at + 1..]),
            None => (part, &b""[..]),
        };
        let mut k = String::with_capacity(key.len());
        uri_encode_into(&mut k, &percent_decode(key), false);
        let mut v = String::with_capacity(value.len());
        uri_encode_into(&mut v, &percent_decode(value), false);
        pairs.push((k, v));
    }
    pairs
}

fn join_query(mut pairs: Vec<(String, String)>) -> String {
    pairs.sort_unstable();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The canonical query string: `&`-separated `key=value` pairs (a bare key gets `=`), each
/// percent-decoded then strictly re-encoded, sorted by key then value. `+` stays a literal `+`
/// (encoded `%2B`), as in aws-c-auth.
pub fn canonical_query(query: &[u8]) -> String {
    join_query(query_pairs(query))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Trim spaces and tabs at both ends and collapse inner runs of them into one space.
fn canonical_value_into(out: &mut Vec<u8>, value: &[u8]) {
    let mut pending_space = false;
    let mut started = false;
    for &b in value {
        if b == b' ' || b == b'\t' {
            pending_space = started;
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
            started = true;
        }
    }
}

/// The canonical header block (`name:value\n` lines) and the signed-headers list.
#[derive(Debug, Clone, Default)]
struct CanonicalHeaders {
    lines: Vec<u8>,
    signed: String,
}

/// Build the canonical headers from lowercased `(name, value)` entries: sort by name (stable, so
/// values of a repeated header keep their order) and join repeated values with `,`.
fn canonical_headers(mut entries: Vec<(Vec<u8>, &[u8])>) -> CanonicalHeaders {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = CanonicalHeaders::default();
    let mut previous: Option<&[u8]> = None;
    for (name, value) in &entries {
        if previous == Some(name.as_slice()) {
            // Same header again: replace the newline of the previous line with a comma.
            out.lines.pop();
            out.lines.push(b',');
        } else {
            if previous.is_some() {
                out.signed.push(';');
            }
            out.signed.push_str(&String::from_utf8_lossy(name));
            out.lines.extend_from_slice(name);
            out.lines.push(b':');
        }
        canonical_value_into(&mut out.lines, value);
        out.lines.push(b'\n');
        previous = Some(name.as_slice());
    }
    out
}

fn canonical_request_bytes(
    method: &str,
    uri: &str,
    query: &str,
    headers: &CanonicalHeaders,
    payload_hash: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        method.len()
            + uri.len()
            + query.len()
            + headers.lines.len()
            + headers.signed.len()
            + payload_hash.len()
            + 8,
    );
    for part in [method, "\n", uri, "\n", query, "\n"] {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(&headers.lines);
    for part in ["\n", &headers.signed, "\n", payload_hash] {
        out.extend_from_slice(part.as_bytes());
    }
    out
}

fn request_string_to_sign(amz_date: &AmzDate, scope: &str, canonical_request: &[u8]) -> String {
    let digest = sha256_hex(canonical_request);
    let mut out = String::with_capacity(ALGORITHM.len() + 16 + scope.len() + 64 + 3);
    out.push_str(ALGORITHM);
    out.push('\n');
    out.push_str(amz_date.as_str());
    out.push('\n');
    out.push_str(scope);
    out.push('\n');
    out.push_str(std::str::from_utf8(&digest).unwrap_or_default());
    out
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// One header as received or to be sent: raw name and value bytes.
pub type HeaderPair<'a> = (&'a [u8], &'a [u8]);

/// An HTTP request as the signer or verifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The method, as sent (`POST`).
    pub method: &'a str,
    /// The path as sent, already percent-encoded. If `query` is `None` it may carry `?query`
    /// (an HTTP/2 `:path`); a trailing `?` is an empty query.
    pub path: &'a [u8],
    /// The raw query string without `?`, or `None` to split it off `path`.
    pub query: Option<&'a [u8]>,
    /// Header names (any case) and values. Pseudo-headers (`:name`) are ignored except
    /// `:authority`, which stands in for `host`.
    pub headers: &'a [HeaderPair<'a>],
}

impl<'a> HttpRequest<'a> {
    fn path_and_query(&self) -> Result<(&'a [u8], &'a [u8])> {
        match self.query {
            Some(query) => {
                if self.path.contains(&b'?') {
                    return Err(Error::invalid(
                        "the path contains '?' and a query was also given; pass one or the other",
                    ));
                }
                Ok((self.path, query))
            }
            None => match self.path.iter().position(|&b| b == b'?') {
                Some(at) => Ok((&self.path[..at], &self.path[at + 1..])),
                None => Ok((self.path, b"")),
            },
        }
    }

    fn check_method(&self) -> Result<()> {
        if self.method.is_empty() || !self.method.bytes().all(is_tchar) {
            return Err(Error::invalid(format!(
                "HTTP method '{}' is not a token",
                shown(self.method.as_bytes(), 32)
            )));
        }
        Ok(())
    }
}

/// Check a header for the signer (errors are `InvalidArgument`) and return its lowercase name.
fn header_name_lower(name: &[u8]) -> Option<Vec<u8>> {
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

fn value_is_clean(value: &[u8]) -> bool {
    !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

fn is_unsigned_header(lname: &[u8]) -> bool {
    lname.starts_with(b"proxy-") || UNSIGNED_HEADERS.iter().any(|h| h.as_bytes() == lname)
}

fn request_size(req: &HttpRequest<'_>) -> usize {
    req.method.len()
        + req.path.len()
        + req.query.map_or(0, <[u8]>::len)
        + req
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 2)
            .sum::<usize>()
}

/// Credentials for signing.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    /// Added as `x-amz-security-token` (signed) when given.
    pub session_token: Option<&'a str>,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.map(|_| "<redacted>"))
            .finish()
    }
}

/// What to sign with.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    pub credentials: Credentials<'a>,
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`; sent as `x-amz-date` (added unless the request already has it).
    pub amz_date: &'a str,
    /// The last line of the canonical request: hex SHA-256 of the body, or a marker such as
    /// [`STREAMING_EVENTS_PAYLOAD`] or [`UNSIGNED_PAYLOAD`].
    pub payload_hash: &'a str,
    /// Normalize `.`/`..`/empty path segments (true for every service but S3).
    pub normalize_path: bool,
    /// Also add (and sign) `x-amz-content-sha256: <payload_hash>`.
    pub content_sha256_header: bool,
}

/// The result of header-based signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub canonical_request: Vec<u8>,
    pub string_to_sign: String,
    pub signature: [u8; 32],
    /// `;`-separated lowercase names.
    pub signed_headers: String,
    /// The full `Authorization` header value.
    pub authorization: String,
    /// Headers the caller must add to the request, in order: `x-amz-date`,
    /// `x-amz-security-token`, `x-amz-content-sha256` (each only if not already there), then
    /// `authorization`.
    pub added_headers: Vec<(String, String)>,
    pub scope: Scope,
}

impl SignedRequest {
    pub fn signature_hex(&self) -> String {
        hex_string(&self.signature)
    }
}

fn check_payload_hash(payload_hash: &str) -> Result<()> {
    if payload_hash.is_empty() || !payload_hash.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "payload_hash must be a non-empty printable ASCII string (hex SHA-256 or a marker such as UNSIGNED-PAYLOAD)",
        ));
    }
    Ok(())
}

/// Lowercased, validated headers to sign, plus what the signer learnt about them.
struct SelectedHeaders<'a> {
    entries: Vec<(Vec<u8>, &'a [u8])>,
    has_host: bool,
    authority: Option<&'a [u8]>,
    amz_date: Option<&'a [u8]>,
    token: Option<&'a [u8]>,
    content_sha256: Option<&'a [u8]>,
}

fn select_headers_for_signing<'a>(headers: &[HeaderPair<'a>]) -> Result<SelectedHeaders<'a>> {
    let mut out = SelectedHeaders {
        entries: Vec::with_capacity(headers.len() + 3),
        has_host: false,
        authority: None,
        amz_date: None,
        token: None,
        content_sha256: None,
    };
    for &(name, value) in headers {
        if !value_is_clean(value) {
            return Err(Error::invalid(format!(
                "header '{}' has a CR, LF or NUL in its value",
                shown(name, 64)
            )));
        }
        if name.first() == Some(&b':') {
            if name == b":authority" {
                out.authority = Some(value);
            }
            continue;
        }
        let lname = header_name_lower(name).ok_or_else(|| {
            Error::invalid(format!(
                "header name '{}' is not an HTTP token",
                shown(name, 64)
            ))
        })?;
        if is_unsigned_header(&lname) {
            continue;
        }
        match lname.as_slice() {
            b"host" => out.has_host = true,
            b"x-amz-date" => out.amz_date = Some(value),
            b"x-amz-security-token" => out.token = Some(value),
            b"x-amz-content-sha256" => out.content_sha256 = Some(value),
            _ => {}
        }
        out.entries.push((lname, value));
    }
    Ok(out)
}

fn trimmed(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &value[start..end]
}

/// Sign `req` with an `Authorization` header (SigV4, header auth).
pub fn sign_request(req: &HttpRequest<'_>, params: &SigningParams<'_>) -> Result<SignedRequest> {
    req.check_method()?;
    check_component(params.credentials.access_key_id, "access key id")?;
    check_component(params.region, "region")?;
    check_component(params.service, "service")?;
    check_payload_hash(params.payload_hash)?;
    if request_size(req) > MAX_REQUEST_BYTES {
        return Err(Error::invalid(format!(
            "request too large to sign (over {MAX_REQUEST_BYTES} bytes of path and headers)"
        )));
    }
    let amz_date = AmzDate::parse(params.amz_date)?;
    let (path, query) = req.path_and_query()?;
    let mut selected = select_headers_for_signing(req.headers)?;
    let mut added: Vec<(String, String)> = Vec::new();

    if !selected.has_host {
        match selected.authority {
            Some(authority) => selected.entries.push((b"host".to_vec(), authority)),
            None => {
                return Err(Error::invalid(
                    "the request needs a host (or :authority) header",
                ))
            }
        }
    }
    match selected.amz_date {
        Some(value) if trimmed(value) != amz_date.as_str().as_bytes() => {
            return Err(Error::invalid(format!(
                "the request's x-amz-date '{}' differs from amz_date '{}'",
                shown(value, 32),
                amz_date
            )))
        }
        Some(_) => {}
        None => {
            added.push(("x-amz-date".into(), amz_date.as_str().into()));
        }
    }
    if let Some(token) = params.credentials.session_token {
        if token.is_empty() || !value_is_clean(token.as_bytes()) {
            return Err(Error::invalid(
                "session_token must be non-empty, without CR, LF or NUL",
            ));
        }
        match selected.token {
            Some(value) if trimmed(value) != token.as_bytes() => {
                return Err(Error::invalid(
                    "the request's x-amz-security-token differs from session_token",
                ))
            }
            Some(_) => {}
            None => added.push(("x-amz-security-token".into(), token.into())),
        }
    }
    match selected.content_sha256 {
        Some(value) if trimmed(value) != params.payload_hash.as_bytes() => {
            return Err(Error::invalid(format!(
                "the request's x-amz-content-sha256 '{}' differs from payload_hash '{}'",
                shown(value, 80),
                params.payload_hash
            )))
        }
        Some(_) => {}
        None if params.content_sha256_header => {
            added.push(("x-amz-content-sha256".into(), params.payload_hash.into()));
        }
        None => {}
    }
    let mut entries = selected.entries;
    for (name, value) in &added {
        entries.push((name.as_bytes().to_vec(), value.as_bytes()));
    }
    let headers = canonical_headers(entries);
    let uri = canonical_uri(path, params.normalize_path);
    let canonical_query = canonical_query(query);
    let canonical_request = canonical_request_bytes(
        req.method,
        &uri,
        &canonical_query,
        &headers,
        params.payload_hash,
    );
    let scope = Scope {
        date8: amz_date.date8().to_owned(),
        region: params.region.to_owned(),
        service: params.service.to_owned(),
    };
    let scope_text = scope.to_string();
    let string_to_sign = request_string_to_sign(&amz_date, &scope_text, &canonical_request);
    let key = derive_key_unchecked(
        params.credentials.secret_access_key,
        amz_date.date8(),
        params.region,
        params.service,
    );
    let signature = hmac(&key, string_to_sign.as_bytes());
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope_text}, SignedHeaders={}, Signature={}",
        params.credentials.access_key_id,
        headers.signed,
        hex_string(&signature)
    );
    added.push(("authorization".into(), authorization.clone()));
    Ok(SignedRequest {
        canonical_request,
        string_to_sign,
        signature,
        signed_headers: headers.signed,
        authorization,
        added_headers: added,
        scope,
    })
}

/// The result of query-string (presigned URL) signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    pub canonical_request: Vec<u8>,
    pub string_to_sign: String,
    pub signature: [u8; 32],
    pub signed_headers: String,
    /// The query string to send (without `?`): the canonical query, then `X-Amz-Signature`.
    pub query: String,
    pub scope: Scope,
}

/// Sign `req` in its query string (a presigned URL valid for `expires_seconds`). The request's
/// headers (minus unsigned ones) are signed; `x-amz-date` and the token go into the query.
/// `params.content_sha256_header` is ignored.
pub fn presign_request(
    req: &HttpRequest<'_>,
    params: &SigningParams<'_>,
    expires_seconds: u64,
) -> Result<PresignedRequest> {
    req.check_method()?;
    check_component(params.credentials.access_key_id, "access key id")?;
    check_component(params.region, "region")?;
    check_component(params.service, "service")?;
    check_payload_hash(params.payload_hash)?;
    if !(1..=7 * 24 * 3600).contains(&expires_seconds) {
        return Err(Error::invalid(
            "expires_seconds must be between 1 and 604800 (7 days)",
        ));
    }
    if request_size(req) > MAX_REQUEST_BYTES {
        return Err(Error::invalid(format!(
            "request too large to sign (over {MAX_REQUEST_BYTES} bytes of path and headers)"
        )));
    }
    let amz_date = AmzDate::parse(params.amz_date)?;
    let (path, query) = req.path_and_query()?;
    let mut selected = select_headers_for_signing(req.headers)?;
    if !selected.has_host {
        match selected.authority {
            Some(authority) => selected.entries.push((b"host".to_vec(), authority)),
            None => {
                return Err(Error::invalid(
                    "the request needs a host (or :authority) header",
                ))
            }
        }
    }
    let headers = canonical_headers(selected.entries);
    let scope = Scope {
        date8: amz_date.date8().to_owned(),
        region: params.region.to_owned(),
        service: params.service.to_owned(),
    };
    let scope_text = scope.to_string();
    let mut pairs = query_pairs(query);
    let mut add = |key: &str, value: &str| {
        let mut v = String::new();
        uri_encode_into(&mut v, value.as_bytes(), false);
        pairs.push((key.to_owned(), v));
    };
    add("X-Amz-Algorithm", ALGORITHM);
    add(
        "X-Amz-Credential",
        &format!("{}/{scope_text}", params.credentials.access_key_id),
    );
    add("X-Amz-Date", amz_date.as_str());
    add("X-Amz-Expires", &expires_seconds.to_string());
    if let Some(token) = params.credentials.session_token {
        add("X-Amz-Security-Token", token);
    }
    add("X-Amz-SignedHeaders", &headers.signed);
    let canonical_query = join_query(pairs);
    let uri = canonical_uri(path, params.normalize_path);
    let canonical_request = canonical_request_bytes(
        req.method,
        &uri,
        &canonical_query,
        &headers,
        params.payload_hash,
    );
    let string_to_sign = request_string_to_sign(&amz_date, &scope_text, &canonical_request);
    let key = derive_key_unchecked(
        params.credentials.secret_access_key,
        amz_date.date8(),
        params.region,
        params.service,
    );
    let signature = hmac(&key, string_to_sign.as_bytes());
    let query = format!(
        "{canonical_query}&X-Amz-Signature={}",
        hex_string(&signature)
    );
    Ok(PresignedRequest {
        canonical_request,
        string_to_sign,
        signature,
        signed_headers: headers.signed,
        query,
        scope,
    })
}

// ---------------------------------------------------------------------------------------------
// Verification of requests
// ---------------------------------------------------------------------------------------------

/// A parsed `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub scope: Scope,
    /// Lowercase names, sorted and unique.
    pub signed_headers: Vec<String>,
    pub signature: [u8; 32],
}

impl Authorization {
    /// Parse an `Authorization` header value. Every failure is a
    /// [`Error::SignatureMismatch`] whose message says what is wrong.
    pub fn parse(value: &[u8]) -> Result<Self> {
        let garbled = |why: &str| mismatch(format!("malformed Authorization header: {why}"));
        if value.len() > MAX_AUTHORIZATION_LEN {
            return Err(garbled(&format!(
                "{} bytes, limit {MAX_AUTHORIZATION_LEN}",
                value.len()
            )));
        }
        let text = std::str::from_utf8(value).map_err(|_| garbled("not UTF-8"))?;
        let text = text.trim_matches([' ', '\t']);
        let (algorithm, rest) = text.split_once(' ').ok_or_else(|| {
            garbled("expected 'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...'")
        })?;
        if algorithm != ALGORITHM {
            return Err(garbled(&format!(
                "unsupported algorithm '{}' (expected {ALGORITHM})",
                shown(algorithm.as_bytes(), 40)
            )));
        }
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let part = part.trim_matches([' ', '\t']);
            let (key, val) = part.split_once('=').ok_or_else(|| {
                garbled(&format!(
                    "component '{}' is not key=value",
                    shown(part.as_bytes(), 40)
                ))
            })?;
            let slot = match key {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => {
                    return Err(garbled(&format!(
                        "unknown component '{}'",
                        shown(key.as_bytes(), 40)
                    )))
                }
            };
            if slot.replace(val).is_some() {
                return Err(garbled(&format!("{key} appears twice")));
            }
        }
        let credential = credential.ok_or_else(|| garbled("no Credential"))?;
        let signed_headers = signed_headers.ok_or_else(|| garbled("no SignedHeaders"))?;
        let signature = signature.ok_or_else(|| garbled("no Signature"))?;

        // Credential = <akid>/<date8>/<region>/<service>/aws4_request
        let mut it = credential.rsplitn(5, '/');
        let (Some(terminator), Some(service), Some(region), Some(date8), Some(akid)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return Err(garbled(
                "Credential must be <access key id>/<YYYYMMDD>/<region>/<service>/aws4_request",
            ));
        };
        if terminator != "aws4_request" {
            return Err(garbled("Credential scope must end with /aws4_request"));
        }
        if akid.is_empty() || region.is_empty() || service.is_empty() {
            return Err(garbled("Credential has an empty component"));
        }
        if check_date8(date8).is_err() {
            return Err(garbled(&format!(
                "Credential date '{}' is not YYYYMMDD",
                shown(date8.as_bytes(), 16)
            )));
        }

        let mut names: Vec<String> = Vec::new();
        for name in signed_headers.split(';') {
            if name.is_empty() || !name.bytes().all(|b| is_tchar(b) && !b.is_ascii_uppercase()) {
                return Err(garbled(&format!(
                    "SignedHeaders entry '{}' is not a lowercase header name",
                    shown(name.as_bytes(), 40)
                )));
            }
            if let Some(last) = names.last() {
                if last.as_str() >= name {
                    return Err(garbled(
                        "SignedHeaders must be sorted and without duplicates",
                    ));
                }
            }
            if names.len() == MAX_SIGNED_HEADERS {
                return Err(garbled(&format!(
                    "more than {MAX_SIGNED_HEADERS} SignedHeaders"
                )));
            }
            names.push(name.to_owned());
        }
        let signature = parse_signature_hex(signature.as_bytes())
            .ok_or_else(|| garbled("Signature must be 64 lowercase hex digits"))?;
        Ok(Authorization {
            access_key_id: akid.to_owned(),
            scope: Scope {
                date8: date8.to_owned(),
                region: region.to_owned(),
                service: service.to_owned(),
            },
            signed_headers: names,
            signature,
        })
    }

    /// Find the one `Authorization` header among `headers` (any case) and parse it.
    pub fn from_headers(headers: &[HeaderPair<'_>]) -> Result<Self> {
        let mut found = None;
        for &(name, value) in headers {
            if name.eq_ignore_ascii_case(b"authorization") {
                if found.is_some() {
                    return Err(mismatch("more than one Authorization header"));
                }
                found = Some(value);
            }
        }
        match found {
            Some(value) => Self::parse(value),
            None => Err(mismatch("missing Authorization header")),
        }
    }

    /// Refuse a credential scope for another region or service.
    pub fn check_scope(&self, region: &str, service: &str) -> Result<()> {
        if self.scope.region != region {
            return Err(mismatch(format!(
                "credential scope region '{}' does not match '{region}'",
                shown(self.scope.region.as_bytes(), 64)
            )));
        }
        if self.scope.service != service {
            return Err(mismatch(format!(
                "credential scope service '{}' does not match '{service}'",
                shown(self.scope.service.as_bytes(), 64)
            )));
        }
        Ok(())
    }

    pub fn signature_hex(&self) -> String {
        hex_string(&self.signature)
    }
}

/// What the verifier expects.
#[derive(Debug, Clone, Copy)]
pub struct VerifyParams<'a> {
    pub region: &'a str,
    pub service: &'a str,
    /// The payload hash to use; `None` takes the (signed) `x-amz-content-sha256` header.
    pub payload_hash: Option<&'a str>,
    /// The server's clock in seconds since the epoch; `None` reads the system clock.
    pub now_unix: Option<f64>,
    /// Largest accepted distance between `x-amz-date` and `now`; `None` disables the check.
    pub max_skew_seconds: Option<f64>,
    pub normalize_path: bool,
}

/// A request whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    pub access_key_id: String,
    pub scope: Scope,
    pub amz_date: AmzDate,
    /// The request signature: the seed of the event chain.
    pub signature: [u8; 32],
    pub signed_headers: Vec<String>,
    pub payload_hash: String,
    pub session_token: Option<String>,
    pub canonical_request: Vec<u8>,
}

/// Values of the request's headers named `lname` (compared case-insensitively), in order.
fn header_values<'a>(headers: &[HeaderPair<'a>], lname: &[u8]) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(lname))
        .map(|&(_, v)| v)
        .collect()
}

fn single_header<'a>(headers: &[HeaderPair<'a>], lname: &str) -> Result<Option<&'a [u8]>> {
    let values = header_values(headers, lname.as_bytes());
    match values.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(mismatch(format!("more than one {lname} header"))),
    }
}

fn now_unix_seconds() -> f64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Verify `req`'s SigV4 header signature against `auth` (from [`Authorization::from_headers`])
/// and the secret of `auth.access_key_id`.
pub fn verify_request(
    req: &HttpRequest<'_>,
    auth: &Authorization,
    secret_access_key: &str,
    params: &VerifyParams<'_>,
) -> Result<VerifiedRequest> {
    auth.check_scope(params.region, params.service)?;
    if let Some(skew) = params.max_skew_seconds {
        if skew.is_nan() || skew < 0.0 {
            return Err(Error::invalid("max_skew_seconds must be >= 0"));
        }
    }
    if req.headers.len() > MAX_REQUEST_HEADERS {
        return Err(mismatch(format!(
            "request has {} headers, limit {MAX_REQUEST_HEADERS}",
            req.headers.len()
        )));
    }
    if request_size(req) > MAX_REQUEST_BYTES {
        return Err(mismatch(format!(
            "request too large to verify (over {MAX_REQUEST_BYTES} bytes of path and headers)"
        )));
    }
    if req.method.is_empty() || !req.method.bytes().all(is_tchar) {
        return Err(mismatch("the HTTP method is not a token"));
    }
    let (path, query) = req.path_and_query()?;

    // The timestamp: the signed x-amz-date header, on the scope's day, within the skew.
    let date_value = single_header(req.headers, "x-amz-date")?
        .ok_or_else(|| mismatch("missing x-amz-date header"))?;
    let amz_date = std::str::from_utf8(trimmed(date_value))
        .ok()
        .and_then(|text| AmzDate::parse(text).ok())
        .ok_or_else(|| {
            mismatch(format!(
                "x-amz-date '{}' is not a YYYYMMDDTHHMMSSZ timestamp",
                shown(date_value, 32)
            ))
        })?;
    if amz_date.date8() != auth.scope.date8 {
        return Err(mismatch(format!(
            "credential scope date {} does not match x-amz-date {amz_date}",
            auth.scope.date8
        )));
    }
    if let Some(limit) = params.max_skew_seconds {
        let now = params.now_unix.unwrap_or_else(now_unix_seconds);
        let skew = amz_date.unix_seconds() as f64 - now;
        if skew.is_nan() || skew.abs() > limit {
            return Err(mismatch(format!(
                "x-amz-date {amz_date} is {:.0} s {} the server clock (limit {limit} s)",
                skew.abs(),
                if skew > 0.0 { "ahead of" } else { "behind" }
            )));
        }
    }

    // Headers that carry meaning must be covered by the signature.
    let signs = |name: &str| auth.signed_headers.iter().any(|h| h == name);
    for required in ["host", "x-amz-date"] {
        if !signs(required) {
            return Err(mismatch(format!(
                "SignedHeaders does not include {required}"
            )));
        }
    }
    let token = single_header(req.headers, "x-amz-security-token")?;
    if token.is_some() && !signs("x-amz-security-token") {
        return Err(mismatch(
            "x-amz-security-token is present but not in SignedHeaders",
        ));
    }
    let content_sha256 = single_header(req.headers, "x-amz-content-sha256")?;
    if content_sha256.is_some() && !signs("x-amz-content-sha256") {
        return Err(mismatch(
            "x-amz-content-sha256 is present but not in SignedHeaders",
        ));
    }
    let payload_hash: String = match (params.payload_hash, content_sha256) {
        (Some(given), _) => {
            check_payload_hash(given)?;
            given.to_owned()
        }
        (None, Some(value)) => String::from_utf8(trimmed(value).to_vec())
            .ok()
            .filter(|v| check_payload_hash(v).is_ok())
            .ok_or_else(|| mismatch("x-amz-content-sha256 is not a printable ASCII value"))?,
        (None, None) => return Err(mismatch(
            "no payload hash: the request has no x-amz-content-sha256 header and none was supplied",
        )),
    };

    // The signed headers, as received. `host` is the HTTP/2 `:authority` when there is one.
    let authority = single_header(req.headers, ":authority")?;
    let mut entries: Vec<(Vec<u8>, &[u8])> = Vec::with_capacity(auth.signed_headers.len() + 2);
    for name in &auth.signed_headers {
        let values = if name == "host" {
            match authority {
                Some(a) => vec![a],
                None => header_values(req.headers, b"host"),
            }
        } else {
            header_values(req.headers, name.as_bytes())
        };
        if values.is_empty() {
            return Err(mismatch(format!(
                "signed header '{name}' is missing from the request"
            )));
        }
        for value in values {
            if !value_is_clean(value) {
                return Err(mismatch(format!(
                    "header '{name}' has a CR, LF or NUL in its value"
                )));
            }
            entries.push((name.as_bytes().to_vec(), value));
        }
    }
    let headers = canonical_headers(entries);
    let uri = canonical_uri(path, params.normalize_path);
    let canonical_query = canonical_query(query);
    let canonical_request =
        canonical_request_bytes(req.method, &uri, &canonical_query, &headers, &payload_hash);
    let scope_text = auth.scope.to_string();
    let string_to_sign = request_string_to_sign(&amz_date, &scope_text, &canonical_request);
    let key = derive_key_unchecked(
        secret_access_key,
        &auth.scope.date8,
        &auth.scope.region,
        &auth.scope.service,
    );
    let expected = hmac(&key, string_to_sign.as_bytes());
    if !bool::from(expected.ct_eq(&auth.signature)) {
        return Err(mismatch(
            "the request signature does not match (wrong secret key, or the method, path, query, signed headers or payload hash differ from what was signed)",
        ));
    }
    Ok(VerifiedRequest {
        access_key_id: auth.access_key_id.clone(),
        scope: auth.scope.clone(),
        amz_date,
        signature: auth.signature,
        signed_headers: auth.signed_headers.clone(),
        payload_hash,
        session_token: token.map(|t| String::from_utf8_lossy(trimmed(t)).into_owned()),
        canonical_request,
    })
}

/// [`verify_request`] with the `Authorization` header taken from `req` and the secret from
/// `lookup(access_key_id)` (`None`: unknown access key).
pub fn verify_request_with(
    req: &HttpRequest<'_>,
    params: &VerifyParams<'_>,
    lookup: impl FnOnce(&str) -> Option<String>,
) -> Result<VerifiedRequest> {
    let auth = Authorization::from_headers(req.headers)?;
    auth.check_scope(params.region, params.service)?;
    let secret = lookup(&auth.access_key_id).ok_or_else(|| unknown_key(&auth.access_key_id))?;
    verify_request(req, &auth, &secret, params)
}

/// The error for an access key id the caller does not know.
pub fn unknown_key(access_key_id: &str) -> Error {
    mismatch(format!(
        "unknown access key id '{}'",
        shown(access_key_id.as_bytes(), 64)
    ))
}

// ---------------------------------------------------------------------------------------------
// Event (chunk) signatures
// ---------------------------------------------------------------------------------------------

/// The encoded `:date` header block of an envelope: `05 ':date' 08 <i64 ms BE>`.
pub fn date_header_bytes(date_ms: i64) -> [u8; DATE_HEADER_LEN] {
    let mut out = [0u8; DATE_HEADER_LEN];
    out[0] = 5;
    out[1..6].copy_from_slice(b":date");
    out[6] = 8;
    out[7..].copy_from_slice(&date_ms.to_be_bytes());
    out
}

/// Feed the event string to sign to `sink`, piece by piece:
/// `AWS4-HMAC-SHA256-PAYLOAD \n amz_date \n scope \n prior \n hex(sha256(headers)) \n hex(sha256(payload))`.
fn event_string_to_sign_parts(
    amz_date: &AmzDate,
    scope: &str,
    prior_hex: &[u8; 64],
    headers_bytes: &[u8],
    payload_bytes: &[u8],
    mut sink: impl FnMut(&[u8]),
) {
    let headers_hash = sha256_hex(headers_bytes);
    let payload_hash = sha256_hex(payload_bytes);
    for part in [
        EVENT_ALGORITHM.as_bytes(),
        b"\n",
        amz_date.as_str().as_bytes(),
        b"\n",
        scope.as_bytes(),
        b"\n",
        prior_hex,
        b"\n",
        &headers_hash,
        b"\n",
        &payload_hash,
    ] {
        sink(part);
    }
}

/// The string to sign of one event, hashing `headers_bytes` and `payload_bytes` as given (for
/// SageMaker: the encoded `:date` header and the encoded inner message).
pub fn event_string_to_sign(
    amz_date: &AmzDate,
    region: &str,
    service: &str,
    prior_signature_hex: &str,
    headers_bytes: &[u8],
    payload_bytes: &[u8],
) -> Result<String> {
    check_component(region, "region")?;
    check_component(service, "service")?;
    let prior = hex32(&signature_arg(prior_signature_hex, "prior_signature")?);
    let scope = format!("{}/{region}/{service}/aws4_request", amz_date.date8());
    let mut out = Vec::with_capacity(EVENT_ALGORITHM.len() + 16 + scope.len() + 3 * 64 + 5);
    event_string_to_sign_parts(
        amz_date,
        &scope,
        &prior,
        headers_bytes,
        payload_bytes,
        |part| out.extend_from_slice(part),
    );
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The signature of one event over raw header and payload bytes (the low-level step; see
/// [`EventSigner`] for the envelope).
pub fn sign_event_raw(
    secret_access_key: &str,
    region: &str,
    service: &str,
    amz_date: &AmzDate,
    prior_signature_hex: &str,
    headers_bytes: &[u8],
    payload_bytes: &[u8],
) -> Result<[u8; 32]> {
    let prior = signature_arg(prior_signature_hex, "prior_signature")?;
    let mut keys = KeyCache::new(secret_access_key, region, service)?;
    Ok(chunk_signature(
        &mut keys,
        amz_date,
        &prior,
        headers_bytes,
        payload_bytes,
    ))
}

fn chunk_signature(
    keys: &mut KeyCache,
    amz_date: &AmzDate,
    prior: &[u8; 32],
    headers_bytes: &[u8],
    payload_bytes: &[u8],
) -> [u8; 32] {
    let (mac, scope) = keys.for_date(amz_date);
    let mut mac = mac.clone();
    let prior_hex = hex32(prior);
    event_string_to_sign_parts(
        amz_date,
        scope,
        &prior_hex,
        headers_bytes,
        payload_bytes,
        |part| mac.update(part),
    );
    mac.finalize().into_bytes().into()
}

fn envelope_headers(date_ms: i64, signature: &[u8; 32]) -> [HeaderRef<'_>; 2] {
    [
        HeaderRef {
            name: ":date",
            value: HeaderValueRef::Timestamp(date_ms),
        },
        HeaderRef {
            name: ":chunk-signature",
            value: HeaderValueRef::Bytes(signature),
        },
    ]
}

/// Encode the outer message of a signed event into `out`, which must hold exactly
/// `ENVELOPE_OVERHEAD + inner.len()` bytes, `inner.len()` being at most 16 MiB (as checked by
/// [`EventSigner::next_signature`]).
///
/// # Panics
/// If `out` has another length.
pub fn write_envelope(date_ms: i64, signature: &[u8; 32], inner: &[u8], out: &mut [u8]) {
    const HEADERS_LEN: usize = ENVELOPE_OVERHEAD - eventstream::MESSAGE_OVERHEAD;
    eventstream::encode_to_slice(
        &envelope_headers(date_ms, signature),
        HEADERS_LEN,
        inner,
        out,
    );
}

/// Signs the events of one stream: each call wraps an encoded inner message into a signed outer
/// message and advances the chain.
pub struct EventSigner {
    keys: KeyCache,
    prior: [u8; 32],
    count: u64,
    ended: bool,
}

impl fmt::Debug for EventSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSigner")
            .field("keys", &self.keys)
            .field("prior_signature", &hex_string(&self.prior))
            .field("count", &self.count)
            .field("ended", &self.ended)
            .finish()
    }
}

impl EventSigner {
    /// A signer whose first event chains from `seed_signature_hex` (the request's `Signature=`).
    pub fn new(
        secret_access_key: &str,
        region: &str,
        service: &str,
        seed_signature_hex: &str,
    ) -> Result<Self> {
        Ok(EventSigner {
            keys: KeyCache::new(secret_access_key, region, service)?,
            prior: signature_arg(seed_signature_hex, "seed_signature")?,
            count: 0,
            ended: false,
        })
    }

    /// Sign the next event (advancing the chain) without encoding it: the signature that
    /// [`write_envelope`] then puts into the outer message. `inner` empty = the final frame.
    pub fn next_signature(&mut self, inner: &[u8], date_ms: i64) -> Result<[u8; 32]> {
        if self.ended {
            return Err(Error::invalid(
                "the event stream was already ended with sign_end()",
            ));
        }
        if inner.len() > eventstream::MAX_PAYLOAD_LEN {
            return Err(Error::TooLarge {
                offset: 0,
                what: "payload",
                size: inner.len() as u64,
                limit: eventstream::MAX_PAYLOAD_LEN as u64,
            });
        }
        let amz_date = AmzDate::from_millis(date_ms)?;
        let date_header = date_header_bytes(date_ms);
        let signature =
            chunk_signature(&mut self.keys, &amz_date, &self.prior, &date_header, inner);
        self.prior = signature;
        self.count += 1;
        if inner.is_empty() {
            self.ended = true;
        }
        Ok(signature)
    }

    fn sign_envelope_into(
        &mut self,
        inner: &[u8],
        date_ms: i64,
        out: &mut Vec<u8>,
    ) -> Result<[u8; 32]> {
        let signature = self.next_signature(inner, date_ms)?;
        let start = out.len();
        out.resize(start + ENVELOPE_OVERHEAD + inner.len(), 0);
        write_envelope(date_ms, &signature, inner, &mut out[start..]);
        Ok(signature)
    }

    /// Append to `out` the outer message carrying `inner` (an encoded event-stream message,
    /// taken as opaque bytes) signed at `date_ms` (ms since the epoch). Returns the signature.
    pub fn sign_into(&mut self, inner: &[u8], date_ms: i64, out: &mut Vec<u8>) -> Result<[u8; 32]> {
        if inner.is_empty() {
            return Err(Error::invalid(
                "the inner message is empty; end the stream with sign_end()",
            ));
        }
        self.sign_envelope_into(inner, date_ms, out)
    }

    /// The outer message carrying `inner`, signed at `date_ms`.
    pub fn sign(&mut self, inner: &[u8], date_ms: i64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(inner.len() + ENVELOPE_OVERHEAD);
        self.sign_into(inner, date_ms, &mut out)?;
        Ok(out)
    }

    /// Append the final signed empty frame (83 bytes) to `out`; no event may follow.
    pub fn sign_end_into(&mut self, date_ms: i64, out: &mut Vec<u8>) -> Result<[u8; 32]> {
        self.sign_envelope_into(&[], date_ms, out)
    }

    /// The final signed empty frame (83 bytes).
    pub fn sign_end(&mut self, date_ms: i64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ENVELOPE_OVERHEAD);
        self.sign_end_into(date_ms, &mut out)?;
        Ok(out)
    }

    /// The last signature issued (the seed before the first event).
    pub fn prior_signature(&self) -> [u8; 32] {
        self.prior
    }

    /// Events signed so far, the final frame included.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether the final empty frame was signed.
    pub fn ended(&self) -> bool {
        self.ended
    }
}

/// Verifies the signed events of one stream, in order: either whole outer messages
/// ([`EventVerifier::verify`]) or raw stream bytes split anywhere ([`EventVerifier::feed_with`],
/// which frames them with the event-stream [`eventstream::Decoder`]); use one or the other for
/// a stream. Any failure is final: the chain cannot be resumed, the stream must be dropped, and
/// every later call returns the same error.
pub struct EventVerifier {
    keys: KeyCache,
    prior: [u8; 32],
    count: u64,
    ended: bool,
    finished: bool,
    failed: Option<Error>,
    /// Bytes of the stream verified so far (offset of the next message), for error messages.
    offset: u64,
    decoder: eventstream::Decoder,
}

impl fmt::Debug for EventVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventVerifier")
            .field("keys", &self.keys)
            .field("prior_signature", &hex_string(&self.prior))
            .field("count", &self.count)
            .field("ended", &self.ended)
            .field("finished", &self.finished)
            .field("failed", &self.failed)
            .finish()
    }
}

fn shift_offset(err: Error, base: u64) -> Error {
    match err {
        Error::Checksum {
            what,
            offset,
            expected,
            actual,
        } => Error::Checksum {
            what,
            offset: offset.saturating_add(base),
            expected,
            actual,
        },
        Error::Malformed { offset, message } => Error::Malformed {
            offset: offset.saturating_add(base),
            message,
        },
        Error::TooLarge {
            offset,
            what,
            size,
            limit,
        } => Error::TooLarge {
            offset: offset.saturating_add(base),
            what,
            size,
            limit,
        },
        Error::Truncated { offset, missing } => Error::Truncated {
            offset: offset.saturating_add(base),
            missing,
        },
        other => other,
    }
}

impl EventVerifier {
    /// A verifier whose first event must chain from `seed_signature_hex`.
    pub fn new(
        secret_access_key: &str,
        region: &str,
        service: &str,
        seed_signature_hex: &str,
    ) -> Result<Self> {
        Ok(EventVerifier {
            keys: KeyCache::new(secret_access_key, region, service)?,
            prior: signature_arg(seed_signature_hex, "seed_signature")?,
            count: 0,
            ended: false,
            finished: false,
            failed: None,
            offset: 0,
            decoder: eventstream::Decoder::new(),
        })
    }

    fn fail(&mut self, err: Error) -> Error {
        self.failed = Some(err.clone());
        err
    }

    fn check_open(&mut self) -> Result<()> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.finished {
            return Err(Error::invalid("the event verifier was already finished"));
        }
        if self.ended {
            let err = mismatch(format!(
                "event {}: a signed event arrived after the final empty frame",
                self.count + 1
            ));
            return Err(self.fail(err));
        }
        Ok(())
    }

    /// Verify one encoded outer message (zero-copy); returns the byte range of its payload (the
    /// inner message, empty for the final frame) within `outer`.
    pub fn verify(&mut self, outer: &[u8]) -> Result<Range<usize>> {
        self.check_open()?;
        let message = match eventstream::decode_message_ref(outer) {
            Ok(m) => m,
            Err(e) => {
                let err = shift_offset(e, self.offset);
                return Err(self.fail(err));
            }
        };
        self.verify_message_ref(&message)?;
        let end = message.encoded_len() - 4;
        Ok(end - message.payload().len()..end)
    }

    /// Verify one outer message decoded (borrowed) by the event-stream decoder.
    pub fn verify_message_ref(&mut self, message: &MessageRef<'_>) -> Result<()> {
        self.check_open()?;
        let result = self.check_event(message.headers(), message.payload());
        self.advance(result, message.payload().is_empty(), message.encoded_len())
    }

    /// Verify one decoded (owned) outer message.
    pub fn verify_message(&mut self, message: &Message) -> Result<()> {
        self.check_open()?;
        let headers = message.headers.iter().map(|h| HeaderRef {
            name: &h.name,
            value: h.value.as_value_ref(),
        });
        let result = self.check_event(headers, &message.payload);
        let encoded_len =
            eventstream::encoded_len(&message.headers, message.payload.len()).unwrap_or(0);
        self.advance(result, message.payload.is_empty(), encoded_len)
    }

    /// Feed raw stream bytes (HTTP/2 DATA frames: messages may be split anywhere and several
    /// may arrive at once). Calls `on_inner(inner_message)` for every verified event, in order,
    /// borrowing it from `data` or from the internal buffer; the final empty frame is verified
    /// but not passed on. An error from `on_inner` stops feeding and is kept like any error.
    pub fn feed_with<F>(&mut self, data: &[u8], mut on_inner: F) -> Result<()>
    where
        F: FnMut(&[u8]) -> Result<()>,
    {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.finished {
            return Err(Error::invalid("the event verifier was already finished"));
        }
        let mut decoder = std::mem::take(&mut self.decoder);
        let result = decoder.feed_with(data, |message, at| {
            self.offset = at;
            self.verify_message_ref(&message)?;
            if message.payload().is_empty() {
                Ok(())
            } else {
                on_inner(message.payload())
            }
        });
        self.decoder = decoder;
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                if self.failed.is_none() {
                    self.failed = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    /// Bytes of a partial outer message held by [`EventVerifier::feed_with`].
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    fn advance(
        &mut self,
        result: Result<[u8; 32]>,
        is_final: bool,
        encoded_len: usize,
    ) -> Result<()> {
        match result {
            Ok(signature) => {
                self.prior = signature;
                self.count += 1;
                self.offset = self.offset.saturating_add(encoded_len as u64);
                self.ended = is_final;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn check_event<'h>(
        &mut self,
        headers: impl Iterator<Item = HeaderRef<'h>> + Clone,
        payload: &[u8],
    ) -> Result<[u8; 32]> {
        let event = self.count + 1;
        let offset = self.offset;
        let malformed = |message: String| Error::malformed(offset, message);
        let mut date_ms = None;
        let mut given: Option<&[u8]> = None;
        let mut count = 0usize;
        for header in headers.clone() {
            count += 1;
            match header.name {
                ":date" => {
                    if date_ms.is_some() {
                        return Err(malformed(format!("event {event}: two :date headers")));
                    }
                    match header.value {
                        HeaderValueRef::Timestamp(ms) => date_ms = Some(ms),
                        other => {
                            return Err(malformed(format!(
                            "event {event}: :date must be a timestamp header (type 8), got type {}",
                            other.header_type().code()
                        )))
                        }
                    }
                }
                ":chunk-signature" => {
                    if given.is_some() {
                        return Err(malformed(format!(
                            "event {event}: two :chunk-signature headers"
                        )));
                    }
                    match header.value {
                        HeaderValueRef::Bytes(b) if b.len() == 32 => given = Some(b),
                        HeaderValueRef::Bytes(b) => {
                            return Err(malformed(format!(
                                "event {event}: :chunk-signature has {} bytes, expected 32",
                                b.len()
                            )))
                        }
                        other => {
                            return Err(malformed(format!(
                                "event {event}: :chunk-signature must be a bytes header (type 6), got type {}",
                                other.header_type().code()
                            )))
                        }
                    }
                }
                _ => {}
            }
        }
        let date_ms =
            date_ms.ok_or_else(|| malformed(format!("event {event}: no :date header")))?;
        let given =
            given.ok_or_else(|| malformed(format!("event {event}: no :chunk-signature header")))?;
        let amz_date = AmzDate::from_millis(date_ms).map_err(|_| {
            malformed(format!(
                "event {event}: :date {date_ms} ms is outside years 0000-9999"
            ))
        })?;
        // Every header but the signature is signed, encoded, in wire order. SageMaker envelopes
        // have only `:date`, whose 15-byte block is built without allocating.
        let expected = if count == 2 {
            let block = date_header_bytes(date_ms);
            chunk_signature(&mut self.keys, &amz_date, &self.prior, &block, payload)
        } else {
            let signed: Vec<HeaderRef<'h>> =
                headers.filter(|h| h.name != ":chunk-signature").collect();
            let mut block = Vec::new();
            eventstream::encode_headers_into(&signed, &mut block)
                .map_err(|e| shift_offset(e, offset))?;
            chunk_signature(&mut self.keys, &amz_date, &self.prior, &block, payload)
        };
        if !bool::from(expected.as_slice().ct_eq(given)) {
            return Err(mismatch(format!(
                "event {event}: :chunk-signature does not verify (wrong key, or the event was reordered, dropped, replayed or altered)"
            )));
        }
        Ok(expected)
    }

    /// Mark the stream as over; returns whether it ended with the final signed empty frame
    /// (clients before 0.12 end without one; callers decide whether that matters). Errors only
    /// with the error that already stopped the stream, or [`Error::Truncated`] if
    /// [`EventVerifier::feed_with`] holds part of a message.
    pub fn finish(&mut self) -> Result<bool> {
        self.finished = true;
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.decoder.buffered() > 0 {
            let missing = self
                .decoder
                .expected_len()
                .map_or(1, |total| total.saturating_sub(self.decoder.buffered()));
            return Err(Error::Truncated {
                offset: self.decoder.offset(),
                missing: missing as u64,
            });
        }
        Ok(self.ended)
    }

    /// The last verified signature (the seed before the first event).
    pub fn prior_signature(&self) -> [u8; 32] {
        self.prior
    }

    /// Events verified so far, the final frame included.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether the final signed empty frame was verified.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether a verification failed (the verifier then refuses everything).
    pub fn failed(&self) -> bool {
        self.failed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SM_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const SM_SEED: &str = "e353b15e1ddd1e349c2cdfcac05f48a5d0eb7ae79e7e3581cca2f15966f26cfe";
    /// §4.3 of the protocol reference: the first captured DATA frame and the final empty frame.
    const FRAME1_HEX: &str = "0000010600000043ceebe946053a6461746508000001a212047518103a6368756e6b2d7369676e61747572650600204f21aacc3a5c6dd0f2da0bccce6883602bdd4165f92c2bc7bb0048fb1eb2c545000000b300000084d890ea940d3a6d6573736167652d747970650700056576656e740b3a6576656e742d7479706507000b5061796c6f616450617274084461746154797065070004555446380f436f6d706c6574696f6e5374617465070008434f4d504c4554450d3a636f6e74656e742d747970650700186170706c69636174696f6e2f6f637465742d73747265616d7b2274797065223a2268656c6c6f222c2274657874223a226669727374227d979aaf57e61ec341";
    const FINAL_HEX: &str = "0000005300000043f5447a58053a6461746508000001a212047a95103a6368756e6b2d7369676e6174757265060020678bfdd904ef8d1ad11feb2e3864207d706629993ebaf922b5759c0ef5d3d6c1bb9be841";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test hex")
    }

    fn sm_headers() -> Vec<HeaderPair<'static>> {
        vec![
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"localhost:18530"),
            (
                b":path",
                b"/endpoints/my-endpoint/invocations-bidirectional-stream?",
            ),
            (b"x-amzn-sagemaker-target-variant", b"AllTraffic"),
            (b"x-amzn-sagemaker-model-invocation-path", b"v1/listen"),
            (
                b"x-amzn-sagemaker-model-query-string",
                b"model=nova-3&language=en",
            ),
            (b"content-type", b"application/vnd.amazon.eventstream"),
            (b"user-agent", b"aws-sdk-python/0.12.0 md/smithy-core#0.9.0"),
            (
                b"x-amz-content-sha256",
                b"STREAMING-AWS4-HMAC-SHA256-EVENTS",
            ),
            (b"accept", b"*/*"),
        ]
    }

    fn sm_params() -> SigningParams<'static> {
        SigningParams {
            credentials: Credentials {
                access_key_id: "AKIDEXAMPLE",
                secret_access_key: SM_SECRET,
                session_token: None,
            },
            region: "us-west-2",
            service: "sagemaker",
            amz_date: "20261125T092331Z",
            payload_hash: STREAMING_EVENTS_PAYLOAD,
            normalize_path: true,
            content_sha256_header: false,
        }
    }

    fn sm_signed() -> (Vec<HeaderPair<'static>>, SignedRequest) {
        let headers = sm_headers();
        let req = HttpRequest {
            method: "POST",
            path: b"/endpoints/my-endpoint/invocations-bidirectional-stream?",
            query: None,
            headers: &headers,
        };
        let signed = sign_request(&req, &sm_params()).expect("sign");
        (headers, signed)
    }

    #[test]
    fn captured_sagemaker_request() {
        let (_, signed) = sm_signed();
        let expected_creq = "POST\n/endpoints/my-endpoint/invocations-bidirectional-stream\n\n\
content-type:application/vnd.amazon.eventstream\nhost:localhost:18530\n\
x-amz-content-sha256:STREAMING-AWS4-HMAC-SHA256-EVENTS\nx-amz-date:20261125T092331Z\n\
x-amzn-sagemaker-model-invocation-path:v1/listen\n\
x-amzn-sagemaker-model-query-string:model=nova-3&language=en\n\
x-amzn-sagemaker-target-variant:AllTraffic\n\n\
content-type;host;x-amz-content-sha256;x-amz-date;x-amzn-sagemaker-model-invocation-path;x-amzn-sagemaker-model-query-string;x-amzn-sagemaker-target-variant\n\
STREAMING-AWS4-HMAC-SHA256-EVENTS";
        assert_eq!(
            String::from_utf8_lossy(&signed.canonical_request),
            expected_creq
        );
        assert_eq!(
            signed.string_to_sign,
            "AWS4-HMAC-SHA256\n20261125T092331Z\n20261125/us-west-2/sagemaker/aws4_request\n\
eb76b7be01ea14194125147d706fdca0a8f41241065418d8f748b7320b788d75"
        );
        assert_eq!(signed.signature_hex(), SM_SEED);
        assert_eq!(
            signed
                .added_headers
                .first()
                .map(|(n, v)| (n.as_str(), v.as_str())),
            Some(("x-amz-date", "20261125T092331Z"))
        );
        assert!(signed
            .authorization
            .ends_with(&format!("Signature={SM_SEED}")));
    }

    #[test]
    fn verify_captured_request_and_negatives() {
        let (mut headers, signed) = sm_signed();
        let auth = signed.authorization.clone();
        headers.push((b"x-amz-date", b"20261125T092331Z"));
        headers.push((b"authorization", auth.as_bytes()));
        let now = AmzDate::parse("20261125T092331Z")
            .expect("date")
            .unix_seconds() as f64;
        let params = VerifyParams {
            region: "us-west-2",
            service: "sagemaker",
            payload_hash: None,
            now_unix: Some(now + 10.0),
            max_skew_seconds: Some(300.0),
            normalize_path: true,
        };
        let req = HttpRequest {
            method: "POST",
            path: b"/endpoints/my-endpoint/invocations-bidirectional-stream?",
            query: None,
            headers: &headers,
        };
        let ok = verify_request_with(&req, &params, |k| {
            (k == "AKIDEXAMPLE").then(|| SM_SECRET.to_owned())
        })
        .expect("verifies");
        assert_eq!(hex_string(&ok.signature), SM_SEED);
        assert_eq!(ok.payload_hash, STREAMING_EVENTS_PAYLOAD);
        assert_eq!(ok.canonical_request, signed.canonical_request);

        let err = |r: Result<VerifiedRequest>| match r {
            Err(Error::SignatureMismatch { message }) => message,
            other => panic!("expected a mismatch, got {other:?}"),
        };
        // Wrong secret.
        let m = err(verify_request_with(&req, &params, |_| Some("nope".into())));
        assert!(m.contains("does not match"), "{m}");
        assert!(!m.contains(SM_SEED));
        // Unknown key.
        let m = err(verify_request_with(&req, &params, |_| None));
        assert!(m.contains("unknown access key id 'AKIDEXAMPLE'"), "{m}");
        // Region / service mismatch.
        let m = err(verify_request_with(
            &req,
            &VerifyParams {
                region: "eu-west-1",
                ..params
            },
            |_| Some(SM_SECRET.into()),
        ));
        assert!(
            m.contains("region 'us-west-2' does not match 'eu-west-1'"),
            "{m}"
        );
        // Skew.
        let m = err(verify_request_with(
            &req,
            &VerifyParams {
                now_unix: Some(now + 301.0),
                ..params
            },
            |_| Some(SM_SECRET.into()),
        ));
        assert!(m.contains("behind the server clock"), "{m}");
        // A changed signed header.
        let mut changed = headers.clone();
        changed[4] = (b"x-amzn-sagemaker-target-variant", b"Other");
        let req2 = HttpRequest {
            headers: &changed,
            ..req
        };
        err(verify_request_with(&req2, &params, |_| {
            Some(SM_SECRET.into())
        }));
        // An unsigned header may change.
        let mut changed = headers.clone();
        changed[8] = (b"user-agent", b"something else");
        let req3 = HttpRequest {
            headers: &changed,
            ..req
        };
        verify_request_with(&req3, &params, |_| Some(SM_SECRET.into())).expect("unsigned header");
        // Missing authorization.
        let req4 = HttpRequest {
            headers: &headers[..headers.len() - 1],
            ..req
        };
        let m = err(verify_request_with(&req4, &params, |_| {
            Some(SM_SECRET.into())
        }));
        assert_eq!(m, "missing Authorization header");
    }

    #[test]
    fn garbled_authorization() {
        let good = "AWS4-HMAC-SHA256 Credential=AKID/20261125/us-west-2/sagemaker/aws4_request, SignedHeaders=host;x-amz-date, Signature=e353b15e1ddd1e349c2cdfcac05f48a5d0eb7ae79e7e3581cca2f15966f26cfe";
        Authorization::parse(good.as_bytes()).expect("good");
        let bad = [
            "",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA1 Credential=a/20261125/r/s/aws4_request, SignedHeaders=host, Signature=00",
            &good.replace("Signature=e353", "Signature=E353"),
            &good.replace("Signature=e353", "Signature=e35"),
            &good.replace("host;x-amz-date", "x-amz-date;host"),
            &good.replace("host;x-amz-date", "host;host"),
            &good.replace("host;x-amz-date", "Host;x-amz-date"),
            &good.replace("host;x-amz-date", ""),
            &good.replace("/aws4_request", "/aws5_request"),
            &good.replace("20261125", "2026112"),
            &good.replace("20261125", "20261325"),
            &good.replace("Credential=AKID/", "Credential=/"),
            &format!("{good}, Signature=00"),
            &format!("{good}, Extra=1"),
            &good.replace(", SignedHeaders", " SignedHeaders"),
            "AWS4-HMAC-SHA256 Credential=x",
        ];
        for value in bad {
            match Authorization::parse(value.as_bytes()) {
                Err(Error::SignatureMismatch { message }) => {
                    assert!(
                        message.starts_with("malformed Authorization header"),
                        "{message}"
                    )
                }
                other => panic!("{value:?} parsed: {other:?}"),
            }
        }
        let huge = vec![b'A'; MAX_AUTHORIZATION_LEN + 1];
        assert!(Authorization::parse(&huge).is_err());
        assert!(Authorization::parse(&[0xff, 0xfe, b' ']).is_err());
    }

    #[test]
    fn amz_dates() {
        let d = AmzDate::from_millis(1_795_598_611_736).expect("date");
        assert_eq!(d.as_str(), "20261125T092331Z");
        assert_eq!(d.date8(), "20261125");
        assert_eq!(AmzDate::parse("20261125T092331Z").expect("p"), d);
        assert_eq!(
            AmzDate::from_unix_seconds(123_456_789).expect("d").as_str(),
            "19731129T213309Z"
        );
        assert_eq!(
            AmzDate::from_millis(-1).expect("d").as_str(),
            "19691231T235959Z"
        );
        assert_eq!(
            AmzDate::parse("20000229T000000Z").expect("leap").date8(),
            "20000229"
        );
        for bad in [
            "20010229T000000Z",
            "20261125T092360Z",
            "20261125T242331Z",
            "20261325T092331Z",
            "20261100T092331Z",
            "20261125 092331Z",
            "2026-11-25T09:23",
            "20261125T092331z",
            "+0261125T092331Z",
        ] {
            assert!(AmzDate::parse(bad).is_err(), "{bad}");
        }
        assert!(AmzDate::from_millis(i64::MAX).is_err());
        assert!(AmzDate::from_millis(i64::MIN).is_err());
        // Round trip over a wide range of days.
        for secs in (-62_167_219_200i64..253_402_300_799).step_by(7_777_777) {
            let d = AmzDate::from_unix_seconds(secs).expect("in range");
            assert_eq!(
                AmzDate::parse(d.as_str()).expect("parses").unix_seconds(),
                secs
            );
        }
    }

    #[test]
    fn canonical_pieces() {
        assert_eq!(
            canonical_uri(b"/endpoints/my%20endpoint%2F%C3%BC/x", true),
            "/endpoints/my%2520endpoint%252F%25C3%25BC/x"
        );
        assert_eq!(canonical_uri(b"//example//", true), "/example/");
        assert_eq!(canonical_uri(b"//example//", false), "//example//");
        assert_eq!(canonical_uri(b"/example/..", true), "/");
        assert_eq!(canonical_uri(b"/a/b/../c/./d", true), "/a/c/d");
        assert_eq!(canonical_uri(b"", false), "/");
        assert_eq!(canonical_uri(b"/../..", true), "/");
        assert_eq!(
            canonical_query(b"Param-3=Value3&Param=Value2&%E1%88%B4=Value1"),
            "%E1%88%B4=Value1&Param=Value2&Param-3=Value3"
        );
        assert_eq!(
            canonical_query(b"b&a=1&&a=0&c=%zz+"),
            "a=0&a=1&b=&c=%25zz%2B"
        );
        assert_eq!(canonical_query(b""), "");
        let mut v = Vec::new();
        canonical_value_into(&mut v, b"  \t \"a   b \t c\"  ");
        assert_eq!(v, b"\"a b c\"");
    }

    #[test]
    fn signing_rejects_bad_arguments() {
        let headers: Vec<HeaderPair<'_>> = vec![(b"host", b"example.com")];
        let req = HttpRequest {
            method: "GET",
            path: b"/",
            query: None,
            headers: &headers,
        };
        let base = sm_params();
        for params in [
            SigningParams {
                amz_date: "yesterday",
                ..base
            },
            SigningParams {
                region: "us west",
                ..base
            },
            SigningParams {
                service: "",
                ..base
            },
            SigningParams {
                payload_hash: "",
                ..base
            },
            SigningParams {
                credentials: Credentials {
                    access_key_id: "a/b",
                    ..base.credentials
                },
                ..base
            },
        ] {
            assert!(matches!(
                sign_request(&req, &params),
                Err(Error::InvalidArgument(_))
            ));
        }
        let no_host: Vec<HeaderPair<'_>> = vec![(b"x-a", b"1")];
        let bad_value: Vec<HeaderPair<'_>> = vec![(b"host", b"a\r\nx-evil: 1")];
        let bad_name: Vec<HeaderPair<'_>> = vec![(b"host", b"a"), (b"bad name", b"1")];
        for h in [&no_host, &bad_value, &bad_name] {
            let r = HttpRequest { headers: h, ..req };
            assert!(matches!(
                sign_request(&r, &base),
                Err(Error::InvalidArgument(_))
            ));
        }
        let r = HttpRequest {
            query: Some(b"a=1"),
            path: b"/?b=2",
            ..req
        };
        assert!(sign_request(&r, &base).is_err());
        let r = HttpRequest {
            method: "GET /",
            ..req
        };
        assert!(sign_request(&r, &base).is_err());
    }

    fn sm_inner_messages() -> Vec<Vec<u8>> {
        use eventstream::{encode, Header, HeaderValue};
        let s = |n: &str, v: &str| Header::new(n, HeaderValue::String(v.to_owned()));
        let common = || vec![s(":message-type", "event"), s(":event-type", "PayloadPart")];
        let mut h1 = common();
        h1.extend([
            s("DataType", "UTF8"),
            s("CompletionState", "COMPLETE"),
            s(":content-type", "application/octet-stream"),
        ]);
        let mut h2 = common();
        h2.extend([
            s("DataType", "BINARY"),
            s("CompletionState", "PARTIAL"),
            s("P", "pad"),
            s(":content-type", "application/octet-stream"),
        ]);
        let mut h3 = common();
        h3.push(s(":content-type", "application/octet-stream"));
        vec![
            encode(&h1, br#"{"type":"hello","text":"first"}"#).expect("e1"),
            encode(&h2, &[0, 1, 2, 3, 4, 5, 6, 7]).expect("e2"),
            encode(&h3, b"third chunk, no DataType/CompletionState headers").expect("e3"),
        ]
    }

    const SM_DATES: [i64; 4] = [
        1_795_598_611_736,
        1_795_598_612_038,
        1_795_598_612_339,
        1_795_598_613_141,
    ];
    const SM_SIGS: [&str; 4] = [
        "4f21aacc3a5c6dd0f2da0bccce6883602bdd4165f92c2bc7bb0048fb1eb2c545",
        "31e8c65b583d0326d1a79f17b61380a8e68b5a494410ca8169ef34819638fb52",
        "919aff438ff2e033ee4873841338127cd4d2e64f43d5bbd701228f8cec5c827d",
        "678bfdd904ef8d1ad11feb2e3864207d706629993ebaf922b5759c0ef5d3d6c1",
    ];

    fn sm_chain() -> Vec<Vec<u8>> {
        let mut signer = EventSigner::new(SM_SECRET, "us-west-2", "sagemaker", SM_SEED).expect("s");
        let mut frames: Vec<Vec<u8>> = sm_inner_messages()
            .iter()
            .zip(SM_DATES)
            .map(|(inner, date)| signer.sign(inner, date).expect("sign"))
            .collect();
        frames.push(signer.sign_end(SM_DATES[3]).expect("end"));
        frames
    }

    #[test]
    fn captured_sagemaker_chain() {
        let inner = sm_inner_messages();
        assert_eq!(
            inner.iter().map(Vec::len).collect::<Vec<_>>(),
            [179, 165, 153]
        );
        let frames = sm_chain();
        assert_eq!(
            frames.iter().map(Vec::len).collect::<Vec<_>>(),
            [262, 248, 236, 83]
        );
        assert_eq!(frames[0], unhex(FRAME1_HEX));
        assert_eq!(frames[3], unhex(FINAL_HEX));
        for (frame, sig) in frames.iter().zip(SM_SIGS) {
            let m = eventstream::decode_message_ref(frame).expect("decodes");
            assert_eq!(
                m.header(":chunk-signature"),
                Some(HeaderValueRef::Bytes(&unhex(sig)))
            );
        }
        // The example string to sign of event 1.
        let sts = event_string_to_sign(
            &AmzDate::from_millis(SM_DATES[0]).expect("d"),
            "us-west-2",
            "sagemaker",
            SM_SEED,
            &date_header_bytes(SM_DATES[0]),
            &inner[0],
        )
        .expect("sts");
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256-PAYLOAD\n20261125T092331Z\n20261125/us-west-2/sagemaker/aws4_request\n\
e353b15e1ddd1e349c2cdfcac05f48a5d0eb7ae79e7e3581cca2f15966f26cfe\n\
c1fe3a047032228a01023acf2df325cd09021543d2f46832534ae2b28bf97559\n\
39b5e0b8b0fdc023f694ebdf8e5f61998326a4aa42599cbed2d95e8cb702ca69"
        );
        // The verifier accepts the chain and returns each inner message.
        let mut v = EventVerifier::new(SM_SECRET, "us-west-2", "sagemaker", SM_SEED).expect("v");
        for (i, frame) in frames.iter().enumerate() {
            let range = v.verify(frame).expect("verifies");
            let expected: &[u8] = inner.get(i).map_or(&[], Vec::as_slice);
            assert_eq!(&frame[range], expected);
        }
        assert!(v.ended());
        assert_eq!(v.count(), 4);
        assert_eq!(v.finish(), Ok(true));
    }

    fn verifier() -> EventVerifier {
        EventVerifier::new(SM_SECRET, "us-west-2", "sagemaker", SM_SEED).expect("v")
    }

    #[test]
    fn chain_negatives() {
        let frames = sm_chain();
        let mismatch_at = |order: &[usize]| -> (usize, Error) {
            let mut v = verifier();
            for (n, &i) in order.iter().enumerate() {
                if let Err(e) = v.verify(&frames[i]) {
                    assert!(v.failed());
                    // Poisoned: even the right next frame fails now.
                    assert!(v.verify(&frames[0]).is_err());
                    return (n, e);
                }
            }
            panic!("order {order:?} verified");
        };
        // Reordered, dropped, replayed.
        for (order, at) in [
            (&[1usize][..], 0),
            (&[0, 2][..], 1),
            (&[0, 0][..], 1),
            (&[0, 1, 3][..], 2),
            (&[0, 1, 2, 3, 3][..], 4),
        ] {
            let (n, e) = mismatch_at(order);
            assert_eq!(n, at, "{order:?}");
            assert!(matches!(e, Error::SignatureMismatch { .. }), "{e}");
        }
        // Old clients: no final frame. Accepted; reported by finish().
        let mut v = verifier();
        for f in &frames[..3] {
            v.verify(f).expect("ok");
        }
        assert!(!v.ended());
        assert_eq!(v.finish(), Ok(false));
        assert!(v.verify(&frames[3]).is_err());
    }

    /// Re-encode the first frame with changed headers/payload (valid CRCs) and verify it.
    fn verify_tampered(headers: &[HeaderRef<'_>], payload: &[u8]) -> Error {
        let frame = eventstream::encode(headers, payload).expect("encode");
        verifier().verify(&frame).expect_err("must fail")
    }

    #[test]
    fn tampered_envelopes() {
        let inner = sm_inner_messages();
        let sig = unhex(SM_SIGS[0]);
        let date = HeaderValueRef::Timestamp(SM_DATES[0]);
        let h = |name, value| HeaderRef { name, value };
        let ok = [
            h(":date", date),
            h(":chunk-signature", HeaderValueRef::Bytes(&sig)),
        ];
        assert!(verifier()
            .verify(&eventstream::encode(&ok, &inner[0]).expect("e"))
            .is_ok());
        // Tampered payload, :date, signature bit, wrong secret.
        let mut payload = inner[0].clone();
        payload[100] ^= 1;
        assert!(matches!(
            verify_tampered(&ok, &payload),
            Error::SignatureMismatch { .. }
        ));
        let later = [
            h(":date", HeaderValueRef::Timestamp(SM_DATES[0] + 1)),
            h(":chunk-signature", HeaderValueRef::Bytes(&sig)),
        ];
        assert!(matches!(
            verify_tampered(&later, &inner[0]),
            Error::SignatureMismatch { .. }
        ));
        for bit in [0usize, 7, 100, 255] {
            let mut flipped = sig.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let hs = [
                HeaderRef {
                    name: ":date",
                    value: date,
                },
                HeaderRef {
                    name: ":chunk-signature",
                    value: HeaderValueRef::Bytes(&flipped),
                },
            ];
            assert!(matches!(
                verify_tampered(&hs, &inner[0]),
                Error::SignatureMismatch { .. }
            ));
        }
        let frame = eventstream::encode(&ok, &inner[0]).expect("e");
        let mut wrong = EventVerifier::new("other", "us-west-2", "sagemaker", SM_SEED).expect("v");
        assert!(matches!(
            wrong.verify(&frame),
            Err(Error::SignatureMismatch { .. })
        ));
        // An extra header is signed too, so adding one breaks the signature.
        let extra = [ok[0], h("x", HeaderValueRef::Int(1)), ok[1]];
        assert!(matches!(
            verify_tampered(&extra, &inner[0]),
            Error::SignatureMismatch { .. }
        ));
        // Structure errors are Malformed.
        let cases: Vec<Vec<HeaderRef<'_>>> = vec![
            vec![ok[1]],
            vec![ok[0]],
            vec![h(":date", HeaderValueRef::Long(SM_DATES[0])), ok[1]],
            vec![
                h(":date", HeaderValueRef::String("20261125T092331Z")),
                ok[1],
            ],
            vec![
                ok[0],
                h(":chunk-signature", HeaderValueRef::String(SM_SIGS[0])),
            ],
            vec![
                ok[0],
                h(":chunk-signature", HeaderValueRef::Bytes(&sig[..31])),
            ],
            vec![h(":date", HeaderValueRef::Timestamp(i64::MAX)), ok[1]],
            vec![],
        ];
        for hs in cases {
            let e = verify_tampered(&hs, &inner[0]);
            assert!(matches!(e, Error::Malformed { .. }), "{hs:?}: {e}");
        }
        // A corrupted frame fails in the decoder (checksum), and poisons the verifier.
        let mut bad = frame.clone();
        bad[150] ^= 0x40;
        let mut v = verifier();
        assert!(matches!(v.verify(&bad), Err(Error::Checksum { .. })));
        assert!(v.verify(&frame).is_err());
        // Truncated and garbage input.
        assert!(verifier().verify(&frame[..frame.len() - 1]).is_err());
        assert!(verifier().verify(&[]).is_err());
        assert!(verifier().verify(&[0xff; 64]).is_err());
    }

    #[test]
    fn reordered_envelope_headers_still_verify() {
        // The signature covers the non-signature headers, wherever the signature header sits.
        let inner = sm_inner_messages();
        let sig = unhex(SM_SIGS[0]);
        let hs = [
            HeaderRef {
                name: ":chunk-signature",
                value: HeaderValueRef::Bytes(&sig),
            },
            HeaderRef {
                name: ":date",
                value: HeaderValueRef::Timestamp(SM_DATES[0]),
            },
        ];
        let frame = eventstream::encode(&hs, &inner[0]).expect("e");
        verifier().verify(&frame).expect("verifies");
        let message = eventstream::decode_message(&frame).expect("d");
        let mut v = verifier();
        v.verify_message(&message).expect("owned message verifies");
        assert_eq!(v.count(), 1);
    }

    #[test]
    fn aws_c_auth_event_chain() {
        // awslabs/aws-c-auth tests/test_event_signing.c (event-stream-signing.json).
        let mut signer = EventSigner::new(
            "secret",
            "us-east-1",
            "demo",
            "e1d8e8c8815e60969f2a34765c9a15945ffc0badbaa4b7e3b163ea19131e949b",
        )
        .expect("s");
        let base = AmzDate::parse("19810116T063000Z")
            .expect("d")
            .unix_seconds()
            * 1000;
        let expected = [
            "7aabf85b765e6a4d0d500b6e968657b14726fa3e1eb7e839302728ffd77629a5",
            "f72aa9642f571d24a6e1ae42f10f073ad9448d8a028b6bcd82da081335adda02",
            "632af120435b57ec241d8bfbb12e496dfd5e2730a1a02ac0ab6eaa230ae02e9a",
            "c6f679ddb3af68f5e82f0cf6761244cb2338cf11e7d01a24130aea1b7c17e53e",
        ];
        let mut out = Vec::new();
        for (i, payload) in [&b"A"[..], b"B", b"C"].iter().enumerate() {
            let sig = signer
                .sign_into(payload, base + 1000 * (i as i64 + 1), &mut out)
                .expect("s");
            assert_eq!(hex_string(&sig), expected[i]);
        }
        let sig = signer.sign_end_into(base + 4000, &mut out).expect("end");
        assert_eq!(hex_string(&sig), expected[3]);
        assert!(signer.ended());
        assert!(signer.sign(b"D", base + 5000).is_err());
        assert!(signer.sign_end(base + 5000).is_err());
    }

    #[test]
    fn aws_sdk_go_raw_chunks() {
        let date = AmzDate::parse("20190127T223754Z").expect("d");
        let mut prior =
            "9d9ab996c81f32c9d4e6fc166c92584f3741d1cb5ce325cd11a77d1f962c8de2".to_owned();
        for (headers, payload, expected) in [
            (
                &b"headers"[..],
                &b"payload"[..],
                "681a7eaa82891536f24af7ec7e9219ee251ccd9bac2f1b981eab7c5ec8579115",
            ),
            (
                b"more headers",
                b"more payload",
                "07633d9d4ab4d81634a2164934d1f648c7cbc6839a8cf0773d818127a267e4d6",
            ),
        ] {
            let sig = sign_event_raw(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "us-east-1",
                "transcribe",
                &date,
                &prior,
                headers,
                payload,
            )
            .expect("s");
            prior = hex_string(&sig);
            assert_eq!(prior, expected);
        }
    }

    #[test]
    fn smithy_rs_string_to_sign() {
        use eventstream::{encode, Header, HeaderValue};
        let inner = encode(
            &[Header::new(
                "some-header",
                HeaderValue::String("value".into()),
            )],
            b"test payload",
        )
        .expect("e");
        let prior = hex_string(&sha256(b"last message sts"));
        let sts = event_string_to_sign(
            &AmzDate::from_unix_seconds(123_456_789).expect("d"),
            "us-east-1",
            "testservice",
            &prior,
            &date_header_bytes(123_456_789_000),
            &inner,
        )
        .expect("sts");
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256-PAYLOAD\n19731129T213309Z\n19731129/us-east-1/testservice/aws4_request\n\
be1f8c7d79ef8e1abc5254a2c70e4da3bfaf4f07328f527444e1fc6ea67273e2\n\
0c0e3b3bf66b59b976181bd7d401927bbd624107303c713fd1e5f3d3c8dd1b1e\n\
f2eba0f2e95967ee9fbc6db5e678d2fd599229c0d04b11e4fc8e0f2a02a806c6"
        );
    }

    #[test]
    fn date_header_matches_encoder() {
        use eventstream::{encode_headers_into, Header, HeaderValue};
        for ms in [0i64, -1, 1_795_598_611_736, i64::MAX] {
            let mut block = Vec::new();
            encode_headers_into(
                &[Header::new(":date", HeaderValue::Timestamp(ms))],
                &mut block,
            )
            .expect("e");
            assert_eq!(block, date_header_bytes(ms));
        }
    }

    #[test]
    fn signer_rejects_bad_arguments() {
        assert!(EventSigner::new("s", "r", "svc", "abc").is_err());
        assert!(EventSigner::new("s", "r", "svc", &SM_SEED.to_uppercase()).is_err());
        assert!(EventVerifier::new("s", "", "svc", SM_SEED).is_err());
        let mut s = EventSigner::new("s", "r", "svc", SM_SEED).expect("s");
        assert!(s.sign(b"", 0).is_err());
        assert!(s.sign(b"x", i64::MAX).is_err());
        let big = vec![0u8; eventstream::MAX_PAYLOAD_LEN + 1];
        assert!(matches!(s.sign(&big, 0), Err(Error::TooLarge { .. })));
        // Failed signing attempts do not advance the chain.
        assert_eq!(s.count(), 0);
        assert_eq!(hex_string(&s.prior_signature()), SM_SEED);
    }

    #[test]
    fn key_derivation_and_cache_across_midnight() {
        let key = derive_signing_key(SM_SECRET, "20261125", "us-west-2", "sagemaker").expect("k");
        assert_eq!(
            key,
            derive_key_unchecked(SM_SECRET, "20261125", "us-west-2", "sagemaker")
        );
        assert!(derive_signing_key(SM_SECRET, "2026112", "us-west-2", "sagemaker").is_err());
        // A stream crossing midnight re-derives; the verifier follows.
        let midnight = AmzDate::parse("20261126T000000Z")
            .expect("d")
            .unix_seconds()
            * 1000;
        let mut signer = EventSigner::new(SM_SECRET, "us-west-2", "sagemaker", SM_SEED).expect("s");
        let mut v = verifier();
        for ms in [midnight - 500, midnight + 500, midnight - 1500] {
            let frame = signer.sign(b"payload", ms).expect("s");
            v.verify(&frame).expect("v");
        }
    }

    #[test]
    fn feed_split_anywhere() {
        let frames = sm_chain();
        let stream: Vec<u8> = frames.concat();
        let inner = sm_inner_messages();
        for chunk in [1usize, 7, 83, 262, 500, stream.len()] {
            let mut v = verifier();
            let mut got: Vec<Vec<u8>> = Vec::new();
            for piece in stream.chunks(chunk) {
                v.feed_with(piece, |m| {
                    got.push(m.to_vec());
                    Ok(())
                })
                .expect("feeds");
            }
            assert_eq!(got, inner, "chunk {chunk}");
            assert_eq!(v.count(), 4);
            assert_eq!(v.finish(), Ok(true));
        }
        // A stream cut inside a message: finish() reports it.
        let mut v = verifier();
        v.feed_with(&stream[..300], |_| Ok(())).expect("feeds");
        assert_eq!(v.count(), 1);
        assert!(matches!(
            v.finish(),
            Err(Error::Truncated { offset: 262, .. })
        ));
        // A replayed frame inside one feed: the events before it come out, then the error,
        // which every later call repeats.
        let mut v = verifier();
        let mut replayed = frames[0].clone();
        replayed.extend_from_slice(&frames[0]);
        let mut n = 0;
        let err = v
            .feed_with(&replayed, |_| {
                n += 1;
                Ok(())
            })
            .expect_err("replay");
        assert_eq!(n, 1);
        assert!(matches!(err, Error::SignatureMismatch { .. }));
        assert_eq!(v.feed_with(&frames[1], |_| Ok(())), Err(err));
    }
}
