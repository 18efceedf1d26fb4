//! A one-shot reply for the page's single thread: a command's result, the login's answer, a
//! server query's answer. `futures::channel::oneshot` did the same with atomics, an `Arc` and a
//! lock per channel, shipped once per reply type (BENCHMARKS.md "Session 13: size").

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    /// The sender is gone (sent or dropped): the receiver resolves.
    closed: bool,
    waker: Option<Waker>,
}

/// Resolves its receiver once, with [`Sender::send`]'s value or, dropped unsent, with `None`.
pub struct Sender<T>(Rc<RefCell<Slot<T>>>);

/// A future of `Some(value)`, or `None` when the sender was dropped without sending.
pub struct Receiver<T>(Rc<RefCell<Slot<T>>>);

pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Rc::new(RefCell::new(Slot { value: None, closed: false, waker: None }));
    (Sender(slot.clone()), Receiver(slot))
}

impl<T> Sender<T> {
    /// Hands the value over (kept until dropped if the receiver is gone).
    pub fn send(self, value: T) {
        self.0.borrow_mut().value = Some(value);
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = self.0.borrow_mut();
            slot.closed = true;
            slot.waker.take()
        };
        // Outside the borrow: a waker may poll right away.
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut slot = self.0.borrow_mut();
        if slot.closed {
            return Poll::Ready(slot.value.take());
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<T>(rx: &mut Receiver<T>, waker: &Waker) -> Poll<Option<T>> {
        Pin::new(rx).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn pending_until_sent_then_the_value_and_one_wake() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let (tx, mut rx) = channel();
        assert!(poll(&mut rx, &waker).is_pending());
        tx.send((7, Some("call".to_string())));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&mut rx, &waker), Poll::Ready(Some((7, Some("call".to_string())))));
    }

    #[test]
    fn sent_before_the_first_poll() {
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let (tx, mut rx) = channel();
        tx.send(3);
        assert_eq!(poll(&mut rx, &waker), Poll::Ready(Some(3)));
    }

    #[test]
    fn dropped_unsent_resolves_none_and_wakes() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let (tx, mut rx) = channel::<u32>();
        assert!(poll(&mut rx, &waker).is_pending());
        drop(tx);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&mut rx, &waker), Poll::Ready(None));
    }

    #[test]
    fn sending_to_a_dropped_receiver_is_harmless() {
        let (tx, rx) = channel();
        drop(rx);
        tx.send(String::from("nobody listens"));
    }
}
