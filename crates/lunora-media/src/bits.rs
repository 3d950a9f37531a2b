//! A big-endian bit reader with Exp-Golomb codes, as used by H.264/HEVC parameter sets.

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BitReaderError {
    #[error("bitstream ended early (needed {needed} more bits)")]
    EndOfData { needed: usize },
    #[error("Exp-Golomb code longer than 32 bits")]
    ExpGolombTooLong,
}

#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, position: 0 }
    }

    pub fn bits_left(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.position)
    }

    pub fn read_bit(&mut self) -> Result<bool, BitReaderError> {
        Ok(self.read_bits(1)? == 1)
    }

    pub fn read_bits(&mut self, count: usize) -> Result<u64, BitReaderError> {
        debug_assert!(count <= 64);
        if self.bits_left() < count {
            return Err(BitReaderError::EndOfData {
                needed: count - self.bits_left(),
            });
        }
        let mut value = 0u64;
        for _ in 0..count {
            let byte = self.data[self.position / 8];
            let bit = (byte >> (7 - (self.position % 8))) & 1;
            value = (value << 1) | u64::from(bit);
            self.position += 1;
        }
        Ok(value)
    }

    pub fn skip_bits(&mut self, count: usize) -> Result<(), BitReaderError> {
        if self.bits_left() < count {
            return Err(BitReaderError::EndOfData {
                needed: count - self.bits_left(),
            });
        }
        self.position += count;
        Ok(())
    }

    /// ue(v)
    pub fn read_ue(&mut self) -> Result<u32, BitReaderError> {
        let mut leading_zeros = 0;
        while !self.read_bit()? {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return Err(BitReaderError::ExpGolombTooLong);
            }
        }
        let rest = self.read_bits(leading_zeros)?;
        Ok(((1u64 << leading_zeros) - 1 + rest) as u32)
    }

    /// se(v)
    pub fn read_se(&mut self) -> Result<i32, BitReaderError> {
        let code = i64::from(self.read_ue()?);
        Ok(if code % 2 == 1 {
            (code + 1) / 2
        } else {
            -(code / 2)
        } as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_codes() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0,1,2,3 then se(4) = -2
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(r.read_ue(), Ok(0));
        assert_eq!(r.read_ue(), Ok(1));
        assert_eq!(r.read_ue(), Ok(2));
        assert_eq!(r.read_ue(), Ok(3));
        assert_eq!(r.read_se(), Ok(-2));
    }

    #[test]
    fn running_out_is_an_error_not_a_panic() {
        let mut r = BitReader::new(&[0x00]);
        assert!(r.read_ue().is_err());
        assert!(r.read_bits(9).is_err());
    }
}
