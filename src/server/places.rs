//! A number of places that a reload can change while some are held.
//!
//! The free places are a tokio semaphore's permits, so takers wait in the
//! order they asked, or are refused at once, as with any semaphore. Raising
//! the number adds free places at once. Lowering it never takes back a
//! place in use: it removes the free places it can, and owes the rest. A
//! place given back while something is owed pays the debt (it is removed
//! instead of freed), so new takers wait or are refused until fewer places
//! are held than the new number; raising the number again cancels debt
//! before it adds places. The number and the debt change under one lock,
//! taken by every resize and every place given back, never by a taker.
//!
//! The permits in existence, free or held, always number the places plus
//! the debt; there is a debt only while no permit is free.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Places, some of them held, whose number can change.
#[derive(Debug)]
pub(super) struct Places {
    free: Arc<Semaphore>,
    count: Mutex<Count>,
}

/// The number of places and what is owed after a lowering.
#[derive(Debug)]
struct Count {
    places: usize,
    /// Places held beyond the number: each given back pays one.
    debt: usize,
}

/// One place taken; given back on drop.
#[derive(Debug)]
pub(super) struct Held {
    places: Arc<Places>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Places {
    /// `places` places, all free.
    pub(super) fn new(places: usize) -> Arc<Self> {
        Arc::new(Self {
            free: Arc::new(Semaphore::new(places)),
            count: Mutex::new(Count { places, debt: 0 }),
        })
    }

    /// A free place, or `None` when none is.
    pub(super) fn try_take(self: &Arc<Self>) -> Option<Held> {
        let permit = self.free.clone().try_acquire_owned().ok()?;
        Some(self.held(permit))
    }

    /// Waits for a free place; places are handed out in the order they
    /// were asked for.
    pub(super) async fn take(self: &Arc<Self>) -> Held {
        let permit = self.free.clone().acquire_owned().await;
        self.held(permit.expect("the semaphore of places is never closed"))
    }

    fn held(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Held {
        Held {
            places: self.clone(),
            permit: Some(permit),
        }
    }

    /// How many places are held, beyond the number included.
    pub(super) fn in_use(&self) -> usize {
        let count = self.count();
        count.places + count.debt - self.free.available_permits()
    }

    /// Makes the number of places `places`, keeping every place held.
    pub(super) fn resize(&self, places: usize) {
        let mut count = self.count();
        if places >= count.places {
            let added = places - count.places;
            let paid = added.min(count.debt);
            count.debt -= paid;
            self.free.add_permits(added - paid);
        } else {
            let removed = count.places - places;
            count.debt += removed - self.free.forget_permits(removed);
        }
        count.places = places;
    }

    fn count(&self) -> MutexGuard<'_, Count> {
        self.count.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut count = self.places.count();
        let permit = self.permit.take().expect("a place is given back once");
        if count.debt > 0 {
            count.debt -= 1;
            permit.forget();
        }
        // Otherwise dropped here, under the lock: freed.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(places: &Arc<Places>, n: usize) -> Vec<Held> {
        (0..n)
            .map(|_| places.try_take().expect("a free place"))
            .collect()
    }

    #[test]
    fn growing_frees_places_at_once() {
        let places = Places::new(1);
        let _held = take(&places, 1);
        assert!(places.try_take().is_none());
        places.resize(3);
        let _more = take(&places, 2);
        assert!(places.try_take().is_none());
        assert_eq!(places.in_use(), 3);
    }

    #[test]
    fn shrinking_keeps_the_places_held_and_admits_none_until_under_the_bound() {
        let places = Places::new(3);
        let mut held = take(&places, 3);
        places.resize(1);
        assert_eq!(places.in_use(), 3, "none revoked");
        held.pop();
        assert!(places.try_take().is_none(), "two held, one allowed");
        held.pop();
        assert!(places.try_take().is_none(), "one held, one allowed");
        held.pop();
        let _one = take(&places, 1);
        assert!(places.try_take().is_none());
    }

    #[test]
    fn shrinking_removes_the_free_places_first() {
        let places = Places::new(4);
        let mut held = take(&places, 1);
        places.resize(2);
        held.extend(take(&places, 1));
        assert!(places.try_take().is_none());
        assert_eq!(places.in_use(), 2);
    }

    #[test]
    fn growing_after_a_shrink_cancels_the_debt_first() {
        let places = Places::new(4);
        let mut held = take(&places, 4);
        places.resize(1); // 3 owed
        places.resize(3); // 1 owed
        assert!(places.try_take().is_none(), "four held, three allowed");
        held.pop();
        assert!(places.try_take().is_none(), "three held, three allowed");
        held.pop();
        let _again = take(&places, 1);
        assert!(places.try_take().is_none());
        assert_eq!(places.in_use(), 3);
    }

    #[tokio::test]
    async fn a_waiting_taker_gets_a_place_given_back_once_the_debt_is_paid() {
        let places = Places::new(2);
        let mut held = take(&places, 2);
        places.resize(1);
        let mut waiting = std::pin::pin!(places.take());
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        held.pop();
        assert!(futures::poll!(waiting.as_mut()).is_pending(), "paid a debt");
        held.pop();
        assert!(futures::poll!(waiting.as_mut()).is_ready());
    }
}
