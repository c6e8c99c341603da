set terminal pngcairo size 900,560 font 'DejaVu Sans,10'
set output 'total_vs_memory.png'
set title 'Total migration time vs guest memory (64 MiB working set, 32 MiB/s)'
set xlabel 'guest memory (GiB)'
set ylabel 'total time (s)'
set logscale x 2
set logscale y
set grid
set key top left
plot 'total_vs_memory_kvm.dat' using 1:2 with linespoints lw 2 title 'kvm', 'total_vs_memory_synthetic.dat' using 1:2 with linespoints lw 2 title 'synthetic'
