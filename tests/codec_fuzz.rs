//! Fuzzing the frame codec and the decoding of every message a peer can
//! send: mutated valid frames and random bytes, through [`decode`] and
//! [`read_frame`]. Nothing may panic, and no single allocation may exceed
//! the frame limit, whatever the bytes claim.
//!
//! The number of cases is proptest's `PROPTEST_CASES` (default below); the
//! test suite runs a short fuzzing session every time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use realize::model::{Attributes, Delta, DirectoryId, FileStamp, Hash, Owner, RelPath, WritePlan};
use realize::protocol::{
    decode, encode, read_frame, ControlRequest, Discarded, ErrorKind, FrameError, GenerateHeader,
    Hello, HelloReply, ListItem, ReadHeader, ReadTrailer, RealizeError, Request, Response,
    StreamRequest, WriteResult, WriteTrailer, MAX_FRAME_LEN,
};
use serde::de::DeserializeOwned;

/// The system allocator, recording the largest single allocation.
struct Measured;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Measured {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Measured = Measured;

/// Valid frames of every kind, the seeds that mutations start from.
fn seeds() -> Vec<Vec<u8>> {
    let dir = DirectoryId::new("photos").unwrap();
    let path = RelPath::new("a/b c/é.jpg").unwrap();
    let owner = Owner {
        uid: 1000,
        gid: 100,
    };
    let stamp = FileStamp {
        size: 70_000,
        modified_ns: -1,
        inode: 42,
        changed_ns: 7,
        mode: 0o644,
        owner,
    };
    let attributes = Attributes {
        modified_ns: 1,
        mode: 0o600,
        owner: Some(owner),
    };
    let plan = WritePlan {
        size: 70_000,
        delta: Delta::full(),
        replaces: Some(stamp),
        attributes,
    };
    let refusal = RealizeError::new(ErrorKind::InvalidPath, "no");
    let list = ListItem::End(Err(refusal.clone()));
    vec![
        encode(&Hello { version: 2 }).unwrap(),
        encode(&HelloReply {
            version: Err(refusal.clone()),
        })
        .unwrap(),
        encode(&Request {
            id: 300,
            op: ControlRequest::SetAttributes {
                dir: dir.clone(),
                path: path.clone(),
                expected: stamp,
                attributes,
            },
        })
        .unwrap(),
        encode(&Request {
            id: 1,
            op: ControlRequest::Delete {
                dir: dir.clone(),
                path: path.clone(),
                expected: stamp,
            },
        })
        .unwrap(),
        encode(&StreamRequest::Write {
            dir: dir.clone(),
            path: path.clone(),
            plan,
        })
        .unwrap(),
        encode(&StreamRequest::Read {
            dir,
            path,
            delta: Delta::full(),
        })
        .unwrap(),
        encode(&ReadHeader { stamp: Ok(stamp) }).unwrap(),
        encode(&ReadTrailer {
            hash: Hash([7; 32]),
            stamp,
        })
        .unwrap(),
        encode(&WriteTrailer {
            expected: Hash([1; 32]),
        })
        .unwrap(),
        encode(&WriteResult {
            result: Err(refusal),
        })
        .unwrap(),
        encode(&list).unwrap(),
        encode(&Discarded { received: 9 }).unwrap(),
        encode(&GenerateHeader { size: Ok(1 << 40) }).unwrap(),
    ]
}

/// One change to a frame.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    /// Bytes that claim the largest lengths bincode can express.
    Bomb(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Bomb),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut frame: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = frame.len().max(1);
        match *mutation {
            Mutation::Set(at, byte) if !frame.is_empty() => frame[at % len] = byte,
            Mutation::Insert(at, byte) => frame.insert(at % (frame.len() + 1), byte),
            Mutation::Remove(at) if !frame.is_empty() => {
                frame.remove(at % len);
            }
            Mutation::Bomb(at) => {
                let at = at % (frame.len() + 1);
                frame.splice(
                    at..at,
                    [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe],
                );
            }
            Mutation::Truncate(at) => frame.truncate(at % len),
            _ => {}
        }
    }
    frame
}

/// Decodes `bytes` as a `T`, as a payload and as a stream of frames.
fn decode_as<T: DeserializeOwned>(bytes: &[u8], runtime: &tokio::runtime::Runtime) {
    let _ = decode::<T>(bytes.get(4..).unwrap_or_default());
    let _ = decode::<T>(bytes);
    runtime.block_on(async {
        let mut stream = bytes;
        // Every frame until the bytes run out or one is refused.
        while let Ok(_) | Err(FrameError::Malformed(_)) = read_frame::<_, T>(&mut stream).await {
            if stream.is_empty() {
                break;
            }
        }
    });
}

/// Decodes `bytes` as each message a peer can send.
fn decode_all(bytes: &[u8], runtime: &tokio::runtime::Runtime) {
    decode_as::<Hello>(bytes, runtime);
    decode_as::<HelloReply>(bytes, runtime);
    decode_as::<Request>(bytes, runtime);
    decode_as::<Response>(bytes, runtime);
    decode_as::<StreamRequest>(bytes, runtime);
    decode_as::<ListItem>(bytes, runtime);
    decode_as::<ReadHeader>(bytes, runtime);
    decode_as::<ReadTrailer>(bytes, runtime);
    decode_as::<WriteTrailer>(bytes, runtime);
    decode_as::<WriteResult>(bytes, runtime);
    decode_as::<Discarded>(bytes, runtime);
    decode_as::<GenerateHeader>(bytes, runtime);
}

/// The runtime that runs [`read_frame`], made once.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // A failure prints its input; nothing is written into the tree.
        failure_persistence: None,
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(3_000),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    // One property, so that no other test allocates while it measures.
    #[test]
    fn no_frame_panics_the_decoder_or_allocates_beyond_the_frame_limit(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 0..8),
        noise in prop::collection::vec(any::<u8>(), 0..64),
        random in any::<bool>(),
    ) {
        let runtime = runtime();
        let seeds = seeds();
        let bytes = match random {
            true => noise,
            false => mutate(seeds[seed.index(seeds.len())].clone(), &mutations),
        };
        LARGEST.store(0, Ordering::Relaxed);
        decode_all(&bytes, runtime);
        let largest = LARGEST.load(Ordering::Relaxed);
        prop_assert!(largest <= MAX_FRAME_LEN, "an allocation of {} bytes for {:02x?}", largest, bytes);
    }
}

#[test]
fn a_frame_announcing_more_than_the_limit_is_refused_before_any_allocation() {
    let announced = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
    let outcome = runtime().block_on(read_frame::<_, Request>(&mut &announced[..]));
    assert!(matches!(outcome, Err(FrameError::TooLarge(len)) if len == MAX_FRAME_LEN + 1));
}
