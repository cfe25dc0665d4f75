//! The agent binary as distctl drives it: framed streams, exit statuses,
//! short input, and cleanup when the reader goes away.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use distctl_proto::{End, Frame, FrameDecoder, Partial, Tag};

const AGENT: &str = env!("CARGO_BIN_EXE_worker-agent");

/// Run the agent with `input` on stdin; returns (exit code, stdout).
fn agent(args: &[&str], input: &[u8]) -> (i32, Vec<u8>) {
    let mut child = Command::new(AGENT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (out.status.code().unwrap_or(-1), out.stdout)
}

fn frames(stream: &[u8]) -> Vec<Frame> {
    let mut dec = FrameDecoder::new();
    dec.feed(stream);
    let mut out = Vec::new();
    while let Some(f) = dec.next_frame().unwrap() {
        out.push(f.to_owned());
    }
    assert_eq!(dec.pending(), 0, "stream ends inside a frame");
    out
}

/// Data bytes, stderr bytes, partial and end of a framed stream; checks
/// that X comes last and its byte count matches the D frames.
fn decode(stream: &[u8]) -> (Vec<u8>, Vec<u8>, Option<Partial>, End) {
    let fs = frames(stream);
    let (last, rest) = fs.split_last().expect("no frames");
    assert_eq!(last.tag, Tag::End, "X is not last");
    let end: End = last.json().unwrap();
    let (mut data, mut err, mut partial) = (Vec::new(), Vec::new(), None);
    for f in rest {
        match f.tag {
            Tag::Data => {
                assert!(f.payload.len() <= distctl_proto::frame::MAX_DATA);
                data.extend_from_slice(&f.payload)
            }
            Tag::Compressed => {
                let mut block = Vec::new();
                distctl_proto::BlockCodec::new()
                    .decompress(&f.payload, &mut block)
                    .unwrap();
                data.extend_from_slice(&block)
            }
            Tag::Stderr => err.extend_from_slice(&f.payload),
            Tag::Partial => partial = Some(f.json().unwrap()),
            Tag::Heartbeat => assert_eq!(f.payload.len(), 8, "lines read so far"),
            Tag::End => panic!("two X frames"),
        }
    }
    assert_eq!(end.data_bytes, data.len() as u64);
    (data, err, partial, end)
}

#[test]
fn framed_byte_op_equals_plain_output() {
    let input: Vec<u8> = (0..3_000_000u32)
        .map(|i| b"ab\xffZ\n"[(i % 5) as usize])
        .collect();
    let (code, plain) = agent(&["op", "upper"], &input);
    assert_eq!(code, 0);
    let (code, stream) = agent(
        &[
            "op",
            "upper",
            "--framed",
            "--expect-bytes",
            &input.len().to_string(),
        ],
        &input,
    );
    assert_eq!(code, 0);
    let (data, _, partial, end) = decode(&stream);
    assert_eq!(data, plain);
    assert_eq!(data, input.to_ascii_uppercase());
    assert!(partial.is_none());
    assert!(end.ok);
    assert_eq!(end.input_bytes, input.len() as u64);
}

#[test]
fn framed_aggregate_sends_a_partial_that_renders_like_plain() {
    let input = b"1\n2.5\n\n-4\n";
    let (_, plain) = agent(&["op", "avg"], input);
    let (code, stream) = agent(&["op", "avg", "--framed"], input);
    assert_eq!(code, 0);
    let (data, _, partial, end) = decode(&stream);
    assert!(data.is_empty() && end.ok);
    let partial = partial.expect("P frame");
    assert_eq!(
        partial
            .render_text(distctl_proto::Op::Avg)
            .unwrap()
            .as_bytes(),
        plain
    );
    assert_eq!(
        String::from_utf8(plain).unwrap(),
        "count 3\navg -0.16666666666666666\n"
    );
}

#[test]
fn bad_number_is_an_input_error_with_the_global_line_number() {
    let (code, stream) = agent(
        &["op", "sum", "--framed", "--line-offset", "1000"],
        b"1\n2\nthree\n",
    );
    assert_eq!(code, 1);
    let (_, _, partial, end) = decode(&stream);
    assert!(partial.is_none());
    assert!(!end.ok && end.input_error);
    assert_eq!(
        end.error.as_deref(),
        Some("line 1003: not a number: 'three'")
    );
    assert_eq!(end.input_bytes, 10, "the whole chunk is still read");
}

#[test]
fn short_input_is_a_retryable_failure() {
    let (_, stream) = agent(
        &["op", "lower", "--framed", "--expect-bytes", "100"],
        b"abc\n",
    );
    let (_, _, _, end) = decode(&stream);
    assert!(!end.ok && !end.input_error);
    assert!(end.error.unwrap().contains("expected 100"));
}

#[test]
fn exec_reports_stdout_stderr_and_status() {
    let (code, stream) = agent(
        &[
            "exec",
            "--framed",
            "--",
            "sh",
            "-c",
            "tr a-z A-Z; echo oops >&2; exit 3",
        ],
        b"hello\n",
    );
    assert_eq!(code, 1);
    let (data, err, _, end) = decode(&stream);
    assert_eq!(data, b"HELLO\n");
    assert_eq!(err, b"oops\n");
    assert_eq!(end.exit_code, Some(3));
    assert!(!end.ok && !end.input_error);
    assert_eq!(end.input_bytes, 6);

    // A command that stops reading early is fine; all input is still counted.
    let big = vec![b'x'; 5 << 20];
    let (code, stream) = agent(
        &[
            "exec",
            "--framed",
            "--expect-bytes",
            &big.len().to_string(),
            "--",
            "head",
            "-c",
            "3",
        ],
        &big,
    );
    assert_eq!(code, 0);
    let (data, _, _, end) = decode(&stream);
    assert_eq!(data, b"xxx");
    assert!(end.ok, "{:?}", end.error);
    assert_eq!(end.input_bytes, big.len() as u64);
}

#[test]
fn background_leftovers_do_not_hold_the_result() {
    // Holding stdout (and stderr), then only stderr.
    for script in ["sleep 30 & echo done", "sleep 31 >/dev/null & echo done"] {
        let start = Instant::now();
        let (code, stream) = agent(&["exec", "--framed", "--", "sh", "-c", script], b"");
        assert_eq!(code, 0);
        let (data, _, _, end) = decode(&stream);
        assert_eq!(data, b"done\n");
        assert!(end.ok);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{script}: waited for the background sleep"
        );
    }
}

#[test]
fn the_end_frame_hashes_and_counts_the_input_and_heartbeats_report_lines_read() {
    // 5,000 lines, the last without its newline.
    let mut input = Vec::new();
    for i in 0..5_000 {
        input.extend_from_slice(format!("line {i}\n").as_bytes());
    }
    input.pop();
    let want_hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&input));
    let len = input.len().to_string();
    for args in [
        &["op", "upper", "--framed", "--expect-bytes", &len][..],
        &[
            "exec",
            "--framed",
            "--expect-bytes",
            &len,
            "--",
            "sh",
            "-c",
            "cat >/dev/null; sleep 1",
        ][..],
    ] {
        let (code, stream) = agent(args, &input);
        assert_eq!(code, 0, "{args:?}");
        let (_, _, _, end) = decode(&stream);
        assert_eq!(
            end.input_hash.as_deref(),
            Some(want_hash.as_str()),
            "{args:?}"
        );
        assert_eq!(end.input_lines, Some(5_000), "{args:?}");
        if args[0] == "exec" {
            // Input read at once, then a second of silence: the beats say so.
            let last_beat = frames(&stream)
                .iter()
                .rfind(|f| f.tag == Tag::Heartbeat)
                .map(|f| u64::from_be_bytes(f.payload[..].try_into().unwrap()));
            assert_eq!(last_beat, Some(4_999), "newlines read");
        }
    }
}

#[test]
fn silent_command_gets_heartbeats() {
    let start = Instant::now();
    let (_, stream) = agent(&["exec", "--framed", "--", "sleep", "1.5"], b"");
    let beats = frames(&stream)
        .iter()
        .filter(|f| f.tag == Tag::Heartbeat)
        .count();
    assert!(start.elapsed() >= Duration::from_millis(1500));
    assert!(beats >= 2, "{beats} heartbeats in 1.5 s");
}

/// Is `pid` still alive (and not a zombie)?
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn reader_gone_kills_the_whole_process_group() {
    let dir = std::env::temp_dir().join(format!("wa-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("pids");
    let script = format!(
        "sleep 60 & echo $! > '{p}'; sh -c 'echo $$ >> \"{p}\"; sleep 60' & wait",
        p = pidfile.display()
    );
    let mut child = Command::new(AGENT)
        .args(["exec", "--framed", "--", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read the first heartbeat, then go away like a dropped connection.
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 5];
    stdout.read_exact(&mut head).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let pids: Vec<u32> = loop {
        let text = std::fs::read_to_string(&pidfile).unwrap_or_default();
        let pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.len() == 2 || Instant::now() > deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(pids.len(), 2, "the command did not start its children");
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && (pids.iter().any(|&p| alive(p)) || child.try_wait().unwrap().is_none())
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        child.try_wait().unwrap().is_some(),
        "the agent did not exit"
    );
    for p in pids {
        assert!(!alive(p), "process {p} of the command survived");
    }
}

#[test]
fn output_file_appears_only_when_complete() {
    let dir = std::env::temp_dir().join(format!("wa-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("result.txt");
    let (code, _) = agent(
        &["op", "upper", "--output", out.to_str().unwrap()],
        b"abc\n",
    );
    assert_eq!(code, 0);
    assert_eq!(std::fs::read(&out).unwrap(), b"ABC\n");
    let bad = dir.join("bad.txt");
    let (code, _) = agent(&["op", "sum", "--output", bad.to_str().unwrap()], b"x\n");
    assert_eq!(code, 1);
    assert!(!bad.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temporary files left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--input-frames` takes the chunk as `D` and `Z` frames mixed;
/// `--compress-output` sends `Z` frames where blocks shrink; the bytes and
/// the counts are the chunk's own either way.
#[test]
fn compressed_frames_both_ways_carry_the_same_bytes() {
    use distctl_proto::frame::{write_data, write_frame};
    let text: Vec<u8> = (0..400_000u32)
        .flat_map(|i| format!("10.0.{}.{} GET /p/{} 200\n", i % 7, i % 250, i % 97).into_bytes())
        .collect();
    let mut codec = distctl_proto::BlockCodec::new();
    let mut stream = Vec::new();
    let mut packed = Vec::new();
    for (i, block) in text.chunks(distctl_proto::codec::MAX_BLOCK).enumerate() {
        if i % 2 == 0 && codec.compress(1, block, &mut packed).unwrap() {
            write_frame(&mut stream, Tag::Compressed, &packed).unwrap();
        } else {
            write_data(&mut stream, Tag::Data, block).unwrap();
        }
    }
    assert!(stream.len() < text.len(), "some blocks went compressed");
    let len = text.len().to_string();
    for extra in [&[][..], &["--compress-output", "3"][..]] {
        let mut args = vec![
            "op",
            "upper",
            "--framed",
            "--input-frames",
            "--expect-bytes",
            &len,
        ];
        args.extend_from_slice(extra);
        let (code, out) = agent(&args, &stream);
        assert_eq!(code, 0);
        let fs = frames(&out);
        let zs = fs.iter().filter(|f| f.tag == Tag::Compressed).count();
        assert_eq!(zs > 0, !extra.is_empty(), "Z frames only when asked");
        let (data, _, _, end) = decode(&out);
        assert!(end.ok, "{end:?}");
        assert_eq!(end.input_bytes, text.len() as u64);
        assert!(data == text.to_ascii_uppercase());
    }
    // `--compress-output auto` follows the input: plain while the chunk
    // comes plain, compressed once distctl switches to Z frames mid-chunk.
    let blocks: Vec<&[u8]> = text.chunks(distctl_proto::codec::MAX_BLOCK).collect();
    let mut switching = Vec::new();
    let mut plain = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        write_data(&mut plain, Tag::Data, block).unwrap();
        if i >= blocks.len() / 2 && codec.compress(1, block, &mut packed).unwrap() {
            write_frame(&mut switching, Tag::Compressed, &packed).unwrap();
        } else {
            write_data(&mut switching, Tag::Data, block).unwrap();
        }
    }
    for (input, compressed) in [(&plain, false), (&switching, true)] {
        let (code, out) = agent(
            &[
                "op",
                "upper",
                "--framed",
                "--input-frames",
                "--compress-output",
                "auto",
                "--expect-bytes",
                &len,
            ],
            input,
        );
        assert_eq!(code, 0);
        let zs = frames(&out)
            .iter()
            .filter(|f| f.tag == Tag::Compressed)
            .count();
        assert_eq!(
            zs > 0,
            compressed,
            "Z frames out only once Z frames came in"
        );
        let (data, _, _, end) = decode(&out);
        assert!(end.ok, "{end:?}");
        assert!(data == text.to_ascii_uppercase());
    }
    // Incompressible output: the agent stops trying and sends it plain.
    let mut x = 0x2545f4914f6cdd1du64;
    let noise: Vec<u8> = (0..6_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let (code, out) = agent(
        &["exec", "--framed", "--compress-output", "1", "--", "cat"],
        &noise,
    );
    assert_eq!(code, 0);
    let (data, _, _, end) = decode(&out);
    assert!(end.ok && data == noise);
    // A frame stream cut short, or garbage, is a failed chunk, not a crash.
    let (code, out) = agent(
        &["op", "upper", "--framed", "--input-frames"],
        &stream[..stream.len() - 3],
    );
    assert_eq!(code, 1);
    assert!(!decode(&out).3.ok);
    let (code, _) = agent(
        &["op", "upper", "--framed", "--input-frames"],
        b"plain text\n",
    );
    assert_eq!(code, 1);
}

/// `self-sha256` prints the sha256 of the agent's own bytes: what distctl's
/// install probe compares with the agent it embeds.
#[test]
fn self_sha256_is_the_sha256_of_the_binary() {
    let (code, out) = agent(&["self-sha256"], b"");
    assert_eq!(code, 0);
    let bytes = std::fs::read(AGENT).unwrap();
    let want = format!("{:x}\n", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(String::from_utf8(out).unwrap(), want);
}
