class TooLarge(Exception): ...
class Timeout(Exception): ...

def decode(
    data: bytes | bytearray | memoryview | int, scale: int = 8, max_pixels: int = 0, max_memory: int = 0,
    deadline: float = 0.0,
) -> tuple[bytes, int, int, int, bytes | None] | None: ...
def decode_planes(
    data: bytes | bytearray | memoryview | int, scale: int = 8, max_pixels: int = 0, max_memory: int = 0,
    deadline: float = 0.0,
) -> tuple[
    tuple[bytes, int, int, int], tuple[bytes, int, int, int], tuple[bytes, int, int, int],
    int, int, int, int, bytes | None,
] | None: ...
