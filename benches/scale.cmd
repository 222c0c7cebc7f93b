scripts/bench-scale.sh --no-build --counts 10000,100000,1000000 --roots /work/benchdata/scale-roots --work /work/benchdata/scale
