"""Server-side batching under the Servable: concurrent requests to one signature run as one.

Honours TF Serving's BatchingParameters (max_batch_size, batch_timeout_micros,
num_batch_threads, max_enqueued_batches, allowed_batch_sizes, pad_variable_length_inputs).
"""
