OWN_SCANS: int  # 1: imaging/_progressive.c writes the scans; 0: libjpeg's progressive mode

def encode(
    pixels: bytes, width: int, height: int, components: int, quality: int,
    icc: bytes = b"", exif: bytes = b"", orientation: int = 1,
) -> bytes: ...
def encode_planes(
    y: bytes, cb: bytes, cr: bytes, width: int, height: int, stride: int, chroma_stride: int,
    quality: int, icc: bytes = b"", exif: bytes = b"", orientation: int = 1,
) -> bytes: ...
