package android.service.quicksettings;

public class TileService extends android.content.Context {
    public void onClick() {}
}
