set terminal pngcairo size 900,560 font 'DejaVu Sans,10'
set output 'phases.png'
set title 'Where the time goes, per phase (memory sweep)'
set style data histograms
set style histogram rowstacked
set style fill solid 0.8 border -1
set boxwidth 0.7
set ylabel 'seconds'
set xtics rotate by -40
set grid y
set key top left
plot 'phases.dat' using 2:xtic(1) title 'setup', '' using 3 title 'pre-copy', '' using 4 title 'stop-and-copy', '' using 5 title 'commit + resume'
