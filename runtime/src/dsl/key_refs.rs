use hashbrown::Equivalent;
use std::hash::{Hash, Hasher};

use crate::operator::KeyRef;

/// A tuple of references to key fields, e.g. `Refs((&e.model, &e.region))`, that finds the
/// owned key `(String, String)` in the operator without building it: generated pipelines
/// allocate a key only when it is new.
#[derive(Debug, Clone, Copy)]
pub struct Refs<T>(pub T);

macro_rules! refs {
    ($($n:tt $t:ident),+) => {
        impl<'a, $($t: Hash),+> Hash for Refs<($(&'a $t,)+)> {
            fn hash<H: Hasher>(&self, state: &mut H) {
                // Same as hashing the owned tuple: `&T` hashes as `T`.
                self.0.hash(state)
            }
        }
        impl<'a, $($t: Eq),+> Equivalent<($($t,)+)> for Refs<($(&'a $t,)+)> {
            fn equivalent(&self, key: &($($t,)+)) -> bool {
                $(*self.0.$n == key.$n)&&+
            }
        }
        impl<'a, $($t: Hash + Eq + Clone),+> KeyRef<($($t,)+)> for Refs<($(&'a $t,)+)> {
            fn to_key(&self) -> ($($t,)+) {
                ($(self.0.$n.clone(),)+)
            }
        }
    };
}

refs!(0 A);
refs!(0 A, 1 B);
refs!(0 A, 1 B, 2 C);
refs!(0 A, 1 B, 2 C, 3 D);
refs!(0 A, 1 B, 2 C, 3 D, 4 E);
refs!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F);

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn refs_hash_like_the_owned_tuple() {
        let s = hashbrown::DefaultHashBuilder::default();
        let owned = ("a".to_string(), 7u32);
        let (m, n) = (&owned.0, &owned.1);
        assert_eq!(s.hash_one(&owned), s.hash_one(Refs((m, n))));
        assert!(Refs((m, n)).equivalent(&owned));
        assert_eq!(Refs((m, n)).to_key(), owned);
    }
}
