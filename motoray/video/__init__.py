"""Video sources: sampled frames become the images of a job.

    sampling.py  which frames are sampled, how a video is cut into work (pure, no decoding)
    decoder.py   PyAV (FFmpeg): open and probe a video, decode the frames of one time range
    display.py   frames as a player shows them: deinterlaced, upright, square pixels
    plan.py      the driver's side: probe every video, split per video or segment, ranges
    frames.py    the worker's side: ranges in, frames (images) and failures out

A frame's key is `<video key>#t=<milliseconds>` (its presentation time from the video's
start); it is the frame's source key everywhere an image's key is used: names, seeds,
manifest. Which frames are sampled depends on the video's timestamps and the `frames`
setting alone, so how a video is cut into ranges never changes an output byte.
"""
