"""A user's image (a file, its bytes, a PIL image, an array of any size, either polarity) turned into a 28×28
MNIST-formatted digit: decoded within limits, the paper and noise taken away, the ink fitted and centred like MNIST's
(an image that is 28×28 already is taken as it is).
"""

# The most pixels an image file may claim in its header before it is refused undecoded: a picture of a digit
# (a 12-megapixel phone photo fits). One value for predict_images, `predict` and `serve` (their max_pixels).
MAX_PIXELS = 16_000_000
