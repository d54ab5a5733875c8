"""The engine every collection uses: layered env, Doppler, masking, step runner, locks, traces."""
